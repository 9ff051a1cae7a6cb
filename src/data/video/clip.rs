//! Clips as images: a clip of `F` RGB frames is one [`Image`] with `3·F` channels, frame `f` in channels
//! `3f..3f+3` (so a batch of clips is `(B, F·3, H, W)`, the same memory as `(B·F, 3, H, W)`), and the ways a
//! clip is spoiled in web data and losers.

use crate::data::image::Image;
use crate::data::render::Degradation;
use rand::Rng;

/// Channels per frame.
const RGB: usize = 3;

/// Joins equally sized RGB frames into one clip image with `3·F` channels.
pub fn join_frames(frames: &[Image]) -> Image {
    let (height, width) = frames.first().map_or((0, 0), |f| (f.height, f.width));
    let mut data = Vec::with_capacity(frames.iter().map(|f| f.data.len()).sum());
    for f in frames {
        data.extend_from_slice(&f.data);
    }
    Image { channels: frames.iter().map(|f| f.channels).sum(), height, width, data }
}

/// Splits a clip image into its RGB frames; `None` unless it has a positive multiple of 3 channels and
/// `channels · height · width` values.
pub fn split_frames(clip: &Image) -> Option<Vec<Image>> {
    let plane = clip.height * clip.width;
    if clip.channels == 0 || !clip.channels.is_multiple_of(RGB) || clip.data.len() != clip.channels * plane {
        return None;
    }
    let frames = clip
        .data
        .chunks(RGB * plane.max(1))
        .map(|d| Image { channels: RGB, height: clip.height, width: clip.width, data: d.to_vec() })
        .collect();
    Some(frames)
}

/// A clip as one 8-bit RGB picture: its frames side by side, left to right (`F·W` wide, `H` high), as a
/// Parquet preference file stores a clip in its `jpg_0` / `jpg_1` columns. A 3-channel image is itself.
pub fn clip_to_strip(clip: &Image) -> image::RgbImage {
    let frames = split_frames(clip).unwrap_or_else(|| vec![clip.clone()]);
    let (w, h) = (clip.width as u32, clip.height as u32);
    let mut out = image::RgbImage::new(w * frames.len() as u32, h);
    for (f, frame) in frames.iter().enumerate() {
        image::imageops::replace(&mut out, &frame.to_rgb8(), i64::from(w) * f as i64, 0);
    }
    out
}

/// The clip of `frames` frames stored as a strip by [`clip_to_strip`], each frame resized to `size` pixels
/// square with `resize`; an error says how the picture's size differs from a strip of square frames.
pub fn strip_to_clip(
    strip: &image::RgbImage,
    frames: usize,
    size: usize,
    resize: impl Fn(&image::RgbImage, usize) -> Result<Image, String>,
) -> Result<Image, String> {
    let (w, h) = strip.dimensions();
    let f = u32::try_from(frames).unwrap_or(u32::MAX);
    if frames == 0 || h == 0 || u64::from(w) != u64::from(h) * u64::from(f) {
        return Err(format!(
            "the picture is {w}x{h}; a clip of {frames} frames is stored as its frames side by side, {frames}·H wide \
             and H high"
        ));
    }
    let parts: Result<Vec<Image>, String> =
        (0..f).map(|k| resize(&image::imageops::crop_imm(strip, k * h, 0, h, h).to_image(), size)).collect();
    Ok(join_frames(&parts?))
}

/// A way to spoil a clip, as in low-quality web data and degraded losers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClipDegradation {
    /// The same kind of spatial degradation on every frame (noise is drawn afresh per frame).
    Frames(Degradation),
    /// One frame, at this index, is spoiled by a spatial degradation (flicker).
    Flicker(usize, Degradation),
    /// Frames `i` and `i + 1` are swapped (jerky, non-monotonic motion).
    Swap(usize),
    /// Every frame repeats the first one (no motion).
    Freeze,
}

impl ClipDegradation {
    /// Draws a degradation for a clip of `n_frames` frames: spatial on every frame half of the time, otherwise
    /// one of the temporal ones.
    pub fn sample(n_frames: usize, rng: &mut impl Rng) -> ClipDegradation {
        let last = n_frames.saturating_sub(1).max(1);
        match rng.gen_range(0..6) {
            0..=2 => ClipDegradation::Frames(Degradation::sample(rng)),
            3 => ClipDegradation::Flicker(rng.gen_range(0..n_frames.max(1)), Degradation::sample(rng)),
            4 => ClipDegradation::Swap(rng.gen_range(0..last)),
            _ => ClipDegradation::Freeze,
        }
    }

    /// Applies the degradation to a clip; indices past the last frame leave the clip unchanged.
    pub fn apply(&self, clip: &Image, rng: &mut impl Rng) -> Image {
        let Some(mut frames) = split_frames(clip) else { return clip.clone() };
        match *self {
            ClipDegradation::Frames(d) => {
                for f in &mut frames {
                    *f = d.apply(f, rng);
                }
            }
            ClipDegradation::Flicker(i, d) => {
                if let Some(f) = frames.get_mut(i) {
                    *f = d.apply(f, rng);
                }
            }
            ClipDegradation::Swap(i) => {
                if i + 1 < frames.len() {
                    frames.swap(i, i + 1);
                }
            }
            ClipDegradation::Freeze => {
                let first = frames[0].clone();
                frames.iter_mut().for_each(|f| *f = first.clone());
            }
        }
        join_frames(&frames)
    }
}
