//! The video judge: every frame goes through the image judge (detector, colour, shape, reconstruction
//! quality); across frames it reads the motion off the centroid and size trajectory and scores its smoothness
//! and the temporal consistency of the object.

use super::{judge, Detection};
use crate::data::prompt::{Colour, Prompt, Shape};
use crate::data::video::{split_frames, Motion, VideoPrompt};
use crate::data::Image;
use serde::Serialize;

/// Smallest net displacement (or twice the size change), as a fraction of the frame side, that counts as motion.
pub const MIN_MOTION: f32 = 0.1;
/// Trajectory wobble, as a fraction of the frame side, at or below which smoothness is 1.
pub const SMOOTH_TOL: f32 = 0.02;
/// Trajectory wobble above [`SMOOTH_TOL`] at which smoothness reaches 0.
pub const SMOOTH_SPAN: f32 = 0.12;

/// Where the object is in one frame, in pixels: centroid and equivalent radius `sqrt(mass / π)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TrackPoint {
    /// Frame index.
    pub frame: usize,
    /// Centroid x.
    pub x: f32,
    /// Centroid y.
    pub y: f32,
    /// Equivalent radius.
    pub r: f32,
}

/// The judge's verdict on one clip for one prompt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VideoJudgement {
    /// What the prompt asked for.
    pub expected: VideoPrompt,
    /// Mass-weighted majority colour of the per-frame detections.
    pub colour: Option<Colour>,
    /// Mass-weighted majority shape of the per-frame detections.
    pub shape: Option<Shape>,
    /// The motion read off the trajectory; `None` when the object does not move (or is found in < 2 frames).
    pub motion: Option<Motion>,
    /// Whether the clip's colour is the asked one.
    pub colour_ok: bool,
    /// Whether the clip's shape is the asked one.
    pub shape_ok: bool,
    /// Whether the clip's motion is the asked one; `None` when the prompt gives no motion.
    pub motion_ok: Option<bool>,
    /// The object's track over the frames it was found in.
    pub track: Vec<TrackPoint>,
    /// In [0, 1]: 1 when the motion is evenly paced along its axis and steady across it.
    pub smoothness: f32,
    /// In [0, 1]: fraction of frames showing exactly one object of the clip's colour and shape.
    pub consistency: f32,
    /// Mean per-frame image quality (see [`super::judge`]), in [0, 1].
    pub quality: f32,
    /// Fraction of checked attributes (colour, shape, motion when given) that are correct.
    pub faithfulness: f32,
    /// `faithfulness · (1 + quality · smoothness · consistency) / 2`, in [0, 1].
    pub score: f32,
}

/// Scores a clip (an image of `3·F` channels, see [`crate::data::video::join_frames`]) against a video prompt.
///
/// - Each frame is judged by [`judge`] against the prompt's object without a position; its best detection
///   gives the frame's colour, shape, centroid and mass, and its reconstruction error the frame's quality.
/// - The clip's colour and shape are the mass-weighted majorities; the motion is the direction of largest
///   evidence between the first and last frame with a detection (net displacement right/left/down/up, or
///   twice the change of equivalent radius for growing/shrinking), if it reaches [`MIN_MOTION`] of the side.
/// - `smoothness` = `1 - (wobble - SMOOTH_TOL) / SMOOTH_SPAN` (clamped), where `wobble` (fraction of the side)
///   is the mean deviation of the per-frame steps along the motion's axis from their mean, plus the mean
///   deviation of the other coordinates (position across the motion, size of a moving object, centre of a
///   growing one) from their means.
/// - `consistency` = fraction of frames with exactly one detection, of the clip's colour and shape.
pub fn judge_video(clip: &Image, prompt: &VideoPrompt) -> VideoJudgement {
    let frames = split_frames(clip).unwrap_or_default();
    let object = Prompt { objects: vec![prompt.object()] };
    let judged: Vec<_> = frames.iter().map(|f| judge(f, &object)).collect();
    let dets: Vec<(usize, &Detection)> =
        judged.iter().enumerate().filter_map(|(i, j)| j.objects[0].found.as_ref().map(|d| (i, d))).collect();
    let colour = vote(dets.iter().map(|(_, d)| (d.colour, d.mass)));
    let shape = vote(dets.iter().map(|(_, d)| (d.shape, d.mass)));
    let side = clip.width.max(clip.height).max(1) as f32;
    let track: Vec<TrackPoint> = dets
        .iter()
        .map(|(f, d)| TrackPoint {
            frame: *f,
            x: d.centroid.0 * clip.width as f32,
            y: d.centroid.1 * clip.height as f32,
            r: (d.mass / std::f32::consts::PI).sqrt(),
        })
        .collect();
    let motion = read_motion(&track, side);
    let wobble = wobble(&track, motion) / side;
    let smoothness = (1.0 - (wobble - SMOOTH_TOL) / SMOOTH_SPAN).clamp(0.0, 1.0);
    let steady = judged
        .iter()
        .filter(|j| {
            let d = j.objects[0].found.as_ref();
            j.n_detected == 1 && d.is_some_and(|d| Some(d.colour) == colour && Some(d.shape) == shape)
        })
        .count();
    let n = judged.len().max(1) as f32;
    let consistency = steady as f32 / n;
    let quality = judged.iter().map(|j| j.quality).sum::<f32>() / n;
    let colour_ok = colour == Some(prompt.colour);
    let shape_ok = shape == Some(prompt.shape);
    let motion_ok = prompt.motion.map(|m| motion == Some(m));
    let correct = colour_ok as usize + shape_ok as usize + motion_ok.unwrap_or(false) as usize;
    let faithfulness = correct as f32 / (2 + motion_ok.is_some() as usize) as f32;
    let score = (faithfulness * (1.0 + quality * smoothness * consistency) * 0.5).clamp(0.0, 1.0);
    let score = if score.is_nan() { 0.0 } else { score };
    VideoJudgement {
        expected: *prompt,
        colour,
        shape,
        motion,
        colour_ok,
        shape_ok,
        motion_ok,
        track,
        smoothness,
        consistency,
        quality,
        faithfulness,
        score,
    }
}

/// The value with the largest total weight; ties go to the first value seen.
fn vote<T: Copy + PartialEq>(items: impl Iterator<Item = (T, f32)>) -> Option<T> {
    let mut totals: Vec<(T, f32)> = Vec::new();
    for (v, w) in items {
        match totals.iter_mut().find(|(t, _)| *t == v) {
            Some((_, total)) => *total += w,
            None => totals.push((v, w)),
        }
    }
    totals
        .into_iter()
        .fold(None, |best: Option<(T, f32)>, (v, w)| match best {
            Some((_, bw)) if bw >= w => best,
            _ => Some((v, w)),
        })
        .map(|(v, _)| v)
}

/// The motion with the largest evidence between the first and the last track point, if it is large enough.
fn read_motion(track: &[TrackPoint], side: f32) -> Option<Motion> {
    let (first, last) = (track.first()?, track.last()?);
    if track.len() < 2 {
        return None;
    }
    let (dx, dy, dr) = (last.x - first.x, last.y - first.y, last.r - first.r);
    let evidence = [
        (Motion::Right, dx),
        (Motion::Left, -dx),
        (Motion::Down, dy),
        (Motion::Up, -dy),
        (Motion::Grow, 2.0 * dr),
        (Motion::Shrink, -2.0 * dr),
    ];
    let (motion, best) = evidence.into_iter().fold((Motion::Right, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
    (best >= MIN_MOTION * side).then_some(motion)
}

/// Mean deviation of the per-frame steps along the motion's axis from their mean, plus the mean deviation of the
/// other coordinates from their means, in pixels. A static object has no axis: all three coordinates count.
fn wobble(track: &[TrackPoint], motion: Option<Motion>) -> f32 {
    if track.len() < 2 {
        return 0.0;
    }
    let xs: Vec<f32> = track.iter().map(|p| p.x).collect();
    let ys: Vec<f32> = track.iter().map(|p| p.y).collect();
    let rs: Vec<f32> = track.iter().map(|p| p.r).collect();
    let frames: Vec<usize> = track.iter().map(|p| p.frame).collect();
    let (axis, across): (Option<&[f32]>, Vec<&[f32]>) = match motion {
        Some(Motion::Left | Motion::Right) => (Some(&xs), vec![&ys, &rs]),
        Some(Motion::Up | Motion::Down) => (Some(&ys), vec![&xs, &rs]),
        Some(Motion::Grow | Motion::Shrink) => (Some(&rs), vec![&xs, &ys]),
        None => (None, vec![&xs, &ys, &rs]),
    };
    let along = axis.map_or(0.0, |a| step_deviation(a, &frames));
    along + across.iter().map(|v| spread(v)).sum::<f32>() / across.len() as f32
}

/// Mean absolute deviation of the per-frame steps of `v` (sampled at `frames`) from the mean step.
fn step_deviation(v: &[f32], frames: &[usize]) -> f32 {
    let steps: Vec<f32> =
        v.windows(2).zip(frames.windows(2)).map(|(w, f)| (w[1] - w[0]) / (f[1] - f[0]).max(1) as f32).collect();
    spread(&steps)
}

/// Mean absolute deviation from the mean; 0 for an empty slice.
fn spread(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    v.iter().map(|x| (x - mean).abs()).sum::<f32>() / v.len() as f32
}
