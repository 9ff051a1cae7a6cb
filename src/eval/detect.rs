//! Object detection on world-style images: foreground by brightness, connected components, and per component
//! the nearest palette colour, the best-fitting shape template and the nearest position anchor.

use crate::data::prompt::{Colour, Position, Shape, BACKGROUND};
use crate::data::render::{area_factor, blur_plane, centroid_dy_factor, coverage, Placed};
use crate::data::Image;
use serde::Serialize;

/// One object found in an image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    /// Nearest palette colour of the object's (un-blended) pixels.
    pub colour: Colour,
    /// Shape whose template fits the soft mask best.
    pub shape: Shape,
    /// Position anchor nearest to the centroid.
    pub position: Position,
    /// Soft-mask centroid as fractions `(x, y)` of width and height.
    pub centroid: (f32, f32),
    /// Soft mass: the sum of foreground coverage, in pixels.
    pub mass: f32,
    /// Fit of the best template, in [0, 1]: `1 - Σ|m - t| / (Σm + Σt)`.
    pub shape_fit: f32,
    /// The best template, placed (used to reconstruct the image for the quality term).
    #[serde(skip)]
    pub placed: Placed,
}

/// Foreground coverage of a pixel, in [0, 1]: palette colours all peak at [`Colour::MAX_CHANNEL`] and the
/// background is grey, so a blend's brightest channel is linear in its coverage.
pub fn foreground(rgb: [f32; 3]) -> f32 {
    let max = rgb[0].max(rgb[1]).max(rgb[2]);
    ((max - BACKGROUND) / (Colour::MAX_CHANNEL - BACKGROUND)).clamp(0.0, 1.0)
}

/// Finds objects: components (4-connected) of pixels with coverage above 1/2, ignoring specks smaller than
/// `max(3, h·w/64)` pixels. Sorted by mass, largest first.
pub fn detect(img: &Image) -> Vec<Detection> {
    let (h, w) = (img.height, img.width);
    if h == 0 || w == 0 {
        return Vec::new();
    }
    let rgb: Vec<[f32; 3]> = (0..h * w).map(|i| img.rgb01(i % w, i / w)).collect();
    let fg: Vec<f32> = rgb.iter().map(|p| foreground(*p)).collect();
    let labels = label_components(&fg, h, w);
    let owner = grow(&labels, h, w, 2);
    let n_labels = labels.iter().flatten().max().map_or(0, |m| m + 1);
    let min_px = (h * w / 64).max(3);
    let mut out = Vec::new();
    for label in 0..n_labels {
        let members: Vec<usize> = (0..h * w).filter(|&i| labels[i] == Some(label)).collect();
        if members.len() < min_px {
            continue;
        }
        let mask: Vec<f32> = (0..h * w).map(|i| if owner[i] == Some(label) { fg[i] } else { 0.0 }).collect();
        if let Some(det) = describe(&members, &mask, &fg, &rgb, h, w) {
            out.push(det);
        }
    }
    out.sort_by(|a, b| b.mass.total_cmp(&a.mass));
    out
}

/// Labels 4-connected components of `fg > 0.5`.
fn label_components(fg: &[f32], h: usize, w: usize) -> Vec<Option<usize>> {
    let mut labels = vec![None; h * w];
    let mut next = 0;
    for start in 0..h * w {
        if fg[start] <= 0.5 || labels[start].is_some() {
            continue;
        }
        let mut stack = vec![start];
        labels[start] = Some(next);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let mut push = |j: usize| {
                if fg[j] > 0.5 && labels[j].is_none() {
                    labels[j] = Some(next);
                    stack.push(j);
                }
            };
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < w {
                push(i + 1);
            }
            if y > 0 {
                push(i - w);
            }
            if y + 1 < h {
                push(i + w);
            }
        }
        next += 1;
    }
    labels
}

/// Grows labels into unlabelled pixels by up to `steps` 8-neighbour steps; a pixel goes to the component that
/// reaches it first (the soft support of each component, split between neighbours).
fn grow(labels: &[Option<usize>], h: usize, w: usize, steps: usize) -> Vec<Option<usize>> {
    let mut owner = labels.to_vec();
    for _ in 0..steps {
        let prev = owner.clone();
        for i in 0..h * w {
            if prev[i].is_some() {
                continue;
            }
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            'scan: for dy in -1..=1 {
                for dx in -1..=1 {
                    let (xx, yy) = (x + dx, y + dy);
                    if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                        if let Some(l) = prev[yy as usize * w + xx as usize] {
                            owner[i] = Some(l);
                            break 'scan;
                        }
                    }
                }
            }
        }
    }
    owner
}

/// Measures one component from its member pixels (coverage above 1/2) and its soft mask (coverage over its
/// grown support, zero elsewhere).
fn describe(members: &[usize], mask: &[f32], fg: &[f32], rgb: &[[f32; 3]], h: usize, w: usize) -> Option<Detection> {
    let mass: f32 = mask.iter().sum();
    if mass <= 0.0 {
        return None;
    }
    let mx = mask.iter().enumerate().map(|(i, m)| m * ((i % w) as f32 + 0.5)).sum::<f32>() / mass;
    let my = mask.iter().enumerate().map(|(i, m)| m * ((i / w) as f32 + 0.5)).sum::<f32>() / mass;
    let colour = nearest_colour(members, fg, rgb);
    let (placed, shape_fit) = best_shape(mask, mass, mx, my, h, w);
    let (fx, fy) = (mx / w as f32, my / h as f32);
    let position = nearest_position(fx, fy);
    Some(Detection { colour, shape: placed.shape, position, centroid: (fx, fy), mass, shape_fit, placed })
}

/// Un-blends each member pixel from the background (`bg + (p - bg) / coverage`), averages weighted by
/// coverage, and returns the nearest palette colour.
fn nearest_colour(members: &[usize], fg: &[f32], rgb: &[[f32; 3]]) -> Colour {
    let mut acc = [0.0f32; 3];
    let mut wsum = 0.0;
    for &i in members {
        let a = fg[i].max(1e-3);
        for c in 0..3 {
            acc[c] += a * (BACKGROUND + (rgb[i][c] - BACKGROUND) / a);
        }
        wsum += a;
    }
    let mean = acc.map(|v| v / wsum.max(1e-6));
    let dist = |col: Colour| col.rgb().iter().zip(mean).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
    let mut best = Colour::ALL[0];
    for col in Colour::ALL {
        if dist(col) < dist(best) {
            best = col;
        }
    }
    best
}

/// Fits each shape template with the measured mass and centroid, sharp and box-blurred once or twice (so
/// blurry samples are still read right), and keeps the best by `1 - L1 / total`. The returned template is the
/// sharp one.
fn best_shape(mask: &[f32], mass: f32, mx: f32, my: f32, h: usize, w: usize) -> (Placed, f32) {
    let mut best: Option<(Placed, f32)> = None;
    for shape in Shape::ALL {
        let r = (mass / area_factor(shape)).sqrt();
        let placed = Placed { shape, cx: mx, cy: my - centroid_dy_factor(shape) * r, r };
        let mut t = coverage(&placed, h, w);
        for _ in 0..3 {
            let diff: f32 = mask.iter().zip(&t).map(|(m, t)| (m - t).abs()).sum();
            let total: f32 = mass + t.iter().sum::<f32>();
            let fit = (1.0 - diff / total.max(1e-6)).clamp(0.0, 1.0);
            if best.as_ref().is_none_or(|(_, f)| fit > *f) {
                best = Some((placed, fit));
            }
            t = blur_plane(&t, h, w);
        }
    }
    best.unwrap_or((Placed { shape: Shape::Circle, cx: mx, cy: my, r: 0.0 }, 0.0))
}

/// The position whose anchor is nearest to `(fx, fy)` (fractions of the image).
pub fn nearest_position(fx: f32, fy: f32) -> Position {
    let d = |p: Position| {
        let (ax, ay) = p.anchor();
        (ax - fx).powi(2) + (ay - fy).powi(2)
    };
    let mut best = Position::Center;
    for p in Position::ALL {
        if d(p) < d(best) {
            best = p;
        }
    }
    best
}
