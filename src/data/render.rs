//! Rasterisation of the world's shapes (anti-aliased by 4×4 supersampling) and the degradations used for
//! web images and losers. The judge reuses [`coverage`] as its shape templates.

use super::image::Image;
use super::prompt::{Colour, Shape, BACKGROUND};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Supersamples per pixel side; 4 gives 16 samples per pixel.
const SUPERSAMPLE: usize = 4;

/// Half-size of a shape as a fraction of the image side, before jitter.
pub const BASE_RADIUS: f32 = 0.18;

/// A shape placed in pixel coordinates: `r` is the circle radius, 0.85·r the square's half-side, and the
/// triangle spans `±r` both ways (apex at the top). No shape reaches further than `r` from its centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placed {
    /// Which shape.
    pub shape: Shape,
    /// Centre of the bounding box, x in pixels (pixel `i` covers `[i, i + 1)`).
    pub cx: f32,
    /// Centre of the bounding box, y in pixels.
    pub cy: f32,
    /// Size parameter in pixels.
    pub r: f32,
}

impl Placed {
    /// Whether the continuous point `(x, y)` is inside the shape.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        match self.shape {
            Shape::Circle => dx * dx + dy * dy <= self.r * self.r,
            Shape::Square => dx.abs() <= 0.85 * self.r && dy.abs() <= 0.85 * self.r,
            Shape::Triangle => dy >= -self.r && dy <= self.r && dx.abs() <= (dy + self.r) * 0.5,
        }
    }

    /// The area in pixels²: `k(shape) · r²`.
    pub fn area(&self) -> f32 {
        area_factor(self.shape) * self.r * self.r
    }

    /// The vertical offset of the centroid below the bounding-box centre, in pixels.
    pub fn centroid_dy(&self) -> f32 {
        centroid_dy_factor(self.shape) * self.r
    }
}

/// `k` in `area = k · r²` for each shape.
pub fn area_factor(shape: Shape) -> f32 {
    match shape {
        Shape::Circle => std::f32::consts::PI,
        Shape::Square => 1.7 * 1.7,
        Shape::Triangle => 2.0,
    }
}

/// `d` in `centroid_y - cy = d · r` for each shape (a triangle's centroid is a third of its height below centre).
pub fn centroid_dy_factor(shape: Shape) -> f32 {
    match shape {
        Shape::Triangle => 1.0 / 3.0,
        _ => 0.0,
    }
}

/// The fraction of each pixel covered by the shape, row-major `height × width`, in [0, 1].
pub fn coverage(p: &Placed, height: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; height * width];
    let reach = p.r + 1.0;
    let x0 = (p.cx - reach).floor().max(0.0) as usize;
    let y0 = (p.cy - reach).floor().max(0.0) as usize;
    let x1 = ((p.cx + reach).ceil().max(0.0) as usize).min(width);
    let y1 = ((p.cy + reach).ceil().max(0.0) as usize).min(height);
    let step = 1.0 / SUPERSAMPLE as f32;
    for y in y0..y1 {
        for x in x0..x1 {
            let mut hits = 0;
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let px = x as f32 + (sx as f32 + 0.5) * step;
                    let py = y as f32 + (sy as f32 + 0.5) * step;
                    hits += p.contains(px, py) as usize;
                }
            }
            out[y * width + x] = hits as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
        }
    }
    out
}

/// Paints shapes over the dark background, each with its palette colour, alpha-blended by coverage.
pub fn paint(height: usize, width: usize, shapes: &[(Placed, Colour)]) -> Image {
    let mut rgb = vec![[BACKGROUND; 3]; height * width];
    for (placed, colour) in shapes {
        let col = colour.rgb();
        for (px, a) in rgb.iter_mut().zip(coverage(placed, height, width)) {
            if a > 0.0 {
                for c in 0..3 {
                    px[c] = px[c] * (1.0 - a) + col[c] * a;
                }
            }
        }
    }
    Image::from_fn01(height, width, |x, y| rgb[y * width + x])
}

/// A way to spoil an image, as in low-quality web data and degraded losers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Degradation {
    /// Adds Gaussian noise with this standard deviation (in [-1, 1] units).
    Noise(f32),
    /// Box-blurs with a 3×3 kernel this many times.
    Blur(usize),
    /// Adds a constant offset to each channel (in [-1, 1] units).
    ColourShift([f32; 3]),
}

impl Degradation {
    /// Draws a random degradation strong enough to be visible on a 16×16 image.
    pub fn sample(rng: &mut impl Rng) -> Degradation {
        match rng.gen_range(0..3) {
            0 => Degradation::Noise(rng.gen_range(0.15..0.35)),
            1 => Degradation::Blur(rng.gen_range(1..=2)),
            _ => {
                let mut shift = [0.0; 3];
                for s in &mut shift {
                    *s = rng.gen_range(0.15..0.4) * if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                }
                Degradation::ColourShift(shift)
            }
        }
    }

    /// Applies the degradation; the result stays in [-1, 1].
    pub fn apply(&self, img: &Image, rng: &mut impl Rng) -> Image {
        let mut out = img.clone();
        match *self {
            Degradation::Noise(sigma) => {
                let normal = Normal::new(0.0f32, sigma.max(1e-6)).unwrap_or_else(|_| unreachable_normal());
                for v in &mut out.data {
                    *v += normal.sample(rng);
                }
            }
            Degradation::Blur(times) => {
                for _ in 0..times {
                    out = box_blur(&out);
                }
            }
            Degradation::ColourShift(shift) => {
                let plane = out.height * out.width;
                for (c, s) in shift.iter().enumerate().take(out.channels) {
                    for v in &mut out.data[c * plane..(c + 1) * plane] {
                        *v += s;
                    }
                }
            }
        }
        for v in &mut out.data {
            *v = v.clamp(-1.0, 1.0);
        }
        out
    }
}

/// A unit normal; only reached if a caller passes a non-finite sigma.
fn unreachable_normal() -> Normal<f32> {
    Normal::new(0.0, 1.0).expect("internal error: unit normal is valid")
}

/// A 3×3 box blur with edge clamping, per channel.
fn box_blur(img: &Image) -> Image {
    let plane = img.height * img.width;
    let mut out = img.clone();
    for c in 0..img.channels {
        let blurred = blur_plane(&img.data[c * plane..(c + 1) * plane], img.height, img.width);
        out.data[c * plane..(c + 1) * plane].copy_from_slice(&blurred);
    }
    out
}

/// A 3×3 box blur of one row-major `h × w` plane with edge clamping.
pub fn blur_plane(plane: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut sum = 0.0;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let yy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
                    let xx = (x as i64 + dx).clamp(0, w as i64 - 1) as usize;
                    sum += plane[yy * w + xx];
                }
            }
            out[y * w + x] = sum / 9.0;
        }
    }
    out
}
