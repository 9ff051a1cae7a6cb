//! The exact judge: a programmatic scorer of how well an image follows a world prompt (and a clip a video
//! prompt, `video`), its aggregation over many images, and PNG grids for looking at samples.
//!
//! **Invariant:** the judge is never used in training; it only reads images and prompts.

pub mod detect;
pub mod grid;
pub mod report;
pub mod text;
pub mod video;

pub use self::detect::{detect, Detection};
pub use self::grid::{
    clip_strip, grid_image, labelled_clip_strip, labelled_grid, save_clip_gif, save_grid, save_grid_with, Captions,
    GridConfig, GridLabels,
};
pub use self::report::{Report, VideoReport};
pub use self::video::{judge_video, VideoJudgement};

use crate::data::prompt::{ObjectSpec, Prompt, BACKGROUND};
use crate::data::render::coverage;
use crate::data::Image;
use serde::Serialize;

/// Mean absolute reconstruction error (RGB in [0, 1]) at or below which quality is 1.
pub const QUALITY_CLEAN_MAE: f32 = 0.006;
/// Mean absolute reconstruction error above [`QUALITY_CLEAN_MAE`] at which quality reaches 0.
pub const QUALITY_SPAN_MAE: f32 = 0.1;

/// The verdict on one prompt object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectJudgement {
    /// What the prompt asked for.
    pub expected: ObjectSpec,
    /// The detection matched to it, if the image has enough objects.
    pub found: Option<Detection>,
    /// Whether the matched object has the asked colour.
    pub colour_ok: bool,
    /// Whether the matched object has the asked shape.
    pub shape_ok: bool,
    /// Whether it sits at the asked position; `None` when the prompt gives no position.
    pub position_ok: Option<bool>,
}

impl ObjectJudgement {
    /// `(correct, checked)` attribute counts.
    fn counts(&self) -> (usize, usize) {
        let pos = self.position_ok.map_or((0, 0), |ok| (ok as usize, 1));
        (self.colour_ok as usize + self.shape_ok as usize + pos.0, 2 + pos.1)
    }
}

/// The judge's verdict on one image for one prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    /// One verdict per prompt object, in prompt order.
    pub objects: Vec<ObjectJudgement>,
    /// Number of objects detected in the image (after dropping specks).
    pub n_detected: usize,
    /// Fraction of checked attributes that are correct, in [0, 1]; 1 for a prompt with no objects.
    pub faithfulness: f32,
    /// Image quality in [0, 1]: 1 when the image is exactly background plus the matched objects.
    pub quality: f32,
    /// `faithfulness · (1 + quality) / 2`, in [0, 1].
    pub score: f32,
}

/// Scores an image against a prompt.
///
/// - Objects are detected by [`detect`]; the prompt's objects are matched to the largest detections by the
///   assignment that maximises correct attributes.
/// - `faithfulness` = correct attributes / checked attributes (colour, shape, and position when given); a
///   prompt object with no detection counts all its attributes wrong.
/// - `quality` = `1 - (mae - QUALITY_CLEAN_MAE) / QUALITY_SPAN_MAE`, clamped to [0, 1], where `mae` is the mean
///   absolute difference between the image and a clean reconstruction (background plus the matched objects'
///   fitted templates in their palette colours). Noise, blur, colour shifts and extra blobs all raise `mae`.
/// - `score` = `faithfulness · (1 + quality) / 2`.
pub fn judge(img: &Image, prompt: &Prompt) -> Judgement {
    let dets = detect(img);
    let k = prompt.objects.len();
    let cands: Vec<&Detection> = dets.iter().take(k).collect();
    let assignment = best_assignment(&prompt.objects, &cands);
    let objects: Vec<ObjectJudgement> =
        prompt.objects.iter().zip(&assignment).map(|(spec, slot)| verdict(spec, slot.map(|j| cands[j]))).collect();
    let (correct, checked) = objects.iter().map(ObjectJudgement::counts).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let faithfulness = if checked == 0 { 1.0 } else { correct as f32 / checked as f32 };
    let quality = quality(img, &cands);
    let score = (faithfulness * (1.0 + quality) * 0.5).clamp(0.0, 1.0);
    Judgement { objects, n_detected: dets.len(), faithfulness, quality, score }
}

/// The verdict for one prompt object given its matched detection.
fn verdict(spec: &ObjectSpec, found: Option<&Detection>) -> ObjectJudgement {
    match found {
        None => ObjectJudgement {
            expected: *spec,
            found: None,
            colour_ok: false,
            shape_ok: false,
            position_ok: spec.position.map(|_| false),
        },
        Some(d) => ObjectJudgement {
            expected: *spec,
            found: Some(d.clone()),
            colour_ok: d.colour == spec.colour,
            shape_ok: d.shape == spec.shape,
            position_ok: spec.position.map(|p| p == d.position),
        },
    }
}

/// Number of correct attributes if `spec` is matched to `d`.
fn n_correct(spec: &ObjectSpec, d: &Detection) -> usize {
    (spec.colour == d.colour) as usize + (spec.shape == d.shape) as usize + (spec.position == Some(d.position)) as usize
}

/// For each prompt object, the index of its detection (or `None`), maximising total correct attributes.
/// Exhaustive for up to 5 objects; beyond that objects take detections in order.
fn best_assignment(specs: &[ObjectSpec], cands: &[&Detection]) -> Vec<Option<usize>> {
    let in_order: Vec<Option<usize>> = (0..specs.len()).map(|i| (i < cands.len()).then_some(i)).collect();
    if specs.len() > 5 {
        return in_order;
    }
    let mut best = (0, in_order.clone());
    let mut current = Vec::with_capacity(specs.len());
    search(specs, cands, &mut vec![false; cands.len()], &mut current, 0, &mut best);
    best.1
}

/// Depth-first search over injective assignments; keeps the first assignment with the most correct attributes.
fn search(
    specs: &[ObjectSpec],
    cands: &[&Detection],
    used: &mut Vec<bool>,
    current: &mut Vec<Option<usize>>,
    correct: usize,
    best: &mut (usize, Vec<Option<usize>>),
) {
    let i = current.len();
    if i == specs.len() {
        if correct > best.0 {
            *best = (correct, current.clone());
        }
        return;
    }
    let free = used.iter().filter(|u| !**u).count();
    for j in 0..cands.len() {
        if !used[j] {
            used[j] = true;
            current.push(Some(j));
            search(specs, cands, used, current, correct + n_correct(&specs[i], cands[j]), best);
            current.pop();
            used[j] = false;
        }
    }
    // Leaving this object unmatched only makes sense when there are fewer detections than remaining objects.
    if free < specs.len() - i {
        current.push(None);
        search(specs, cands, used, current, correct, best);
        current.pop();
    }
}

/// Quality from the reconstruction error of the image against background plus the matched templates.
fn quality(img: &Image, matched: &[&Detection]) -> f32 {
    let (h, w) = (img.height, img.width);
    if h == 0 || w == 0 {
        return 0.0;
    }
    let mut recon = vec![[BACKGROUND; 3]; h * w];
    for d in matched {
        let col = d.colour.rgb();
        for (px, a) in recon.iter_mut().zip(coverage(&d.placed, h, w)) {
            for c in 0..3 {
                px[c] = px[c] * (1.0 - a) + col[c] * a;
            }
        }
    }
    let mut err = 0.0f32;
    for (i, r) in recon.iter().enumerate() {
        let p = img.rgb01(i % w, i / w);
        err += (0..3).map(|c| (p[c] - r[c]).abs()).sum::<f32>();
    }
    let mae = err / (3 * h * w) as f32;
    if mae.is_nan() {
        return 0.0;
    }
    (1.0 - (mae - QUALITY_CLEAN_MAE) / QUALITY_SPAN_MAE).clamp(0.0, 1.0)
}
