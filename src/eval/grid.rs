//! PNG grids of images, frame strips and animated GIFs of clips, for `seppoc sample` and `seppoc eval`.

use crate::data::video::split_frames;
use crate::data::Image;
use std::path::Path;

/// How to lay out a grid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridConfig {
    /// Images per row (0 is treated as 1).
    pub cols: usize,
    /// Gap between cells, in output pixels.
    pub spacing: u32,
    /// Nearest-neighbour upscaling of each image (0 is treated as 1); 16×16 images are easier to see at 4.
    pub scale: u32,
    /// Colour of the gaps.
    pub background: [u8; 3],
}

/// Lays images out row by row; each cell is as large as the largest image.
pub fn grid_image(images: &[Image], cfg: &GridConfig) -> image::RgbImage {
    let cols = cfg.cols.max(1);
    let scale = cfg.scale.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let cell_w = images.iter().map(|i| i.width).max().unwrap_or(1) as u32 * scale;
    let cell_h = images.iter().map(|i| i.height).max().unwrap_or(1) as u32 * scale;
    let width = cols as u32 * cell_w + (cols as u32 + 1) * cfg.spacing;
    let height = rows as u32 * cell_h + (rows as u32 + 1) * cfg.spacing;
    let mut out = image::RgbImage::from_pixel(width, height, image::Rgb(cfg.background));
    for (idx, img) in images.iter().enumerate() {
        let rgb = img.to_rgb8();
        let x0 = (idx % cols) as u32 * (cell_w + cfg.spacing) + cfg.spacing;
        let y0 = (idx / cols) as u32 * (cell_h + cfg.spacing) + cfg.spacing;
        for y in 0..rgb.height() * scale {
            for x in 0..rgb.width() * scale {
                out.put_pixel(x0 + x, y0 + y, *rgb.get_pixel(x / scale, y / scale));
            }
        }
    }
    out
}

/// What to write into a grid besides the samples: a label left of each row and each cell's prompt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GridLabels {
    /// The label of each row of cells (`base`, `trained`, a model's name); none: no label column.
    pub rows: Vec<String>,
    /// Each cell's prompt, in cell order.
    pub prompts: Vec<String>,
    /// Which cells get their prompt written under them.
    pub captions: Captions,
}

/// Which cells of a grid get their prompt written under them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Captions {
    /// Every cell (each cell has its own prompt).
    #[default]
    Every,
    /// The cells of the last row only: every column shares one prompt (`run`'s base row over its trained row).
    LastRow,
}

/// Widest row label, in characters (longer labels wrap).
const LABEL_CHARS: usize = 18;
/// Narrowest column that carries a caption, in pixels (ten characters).
const CAPTION_MIN_W: u32 = 10 * super::text::CHAR_W;

/// The grid of [`grid_image`] with `labels` written into it: each row's label in a column on the left, and
/// each captioned cell's prompt under it, wrapped to the column's width (columns are widened to ten characters
/// where cells are narrower). Text is black on a light background and white on a dark one.
pub fn labelled_grid(images: &[Image], cfg: &GridConfig, labels: &GridLabels) -> image::RgbImage {
    use super::text::{draw_text, text_width, wrap, CHAR_W, LINE_H};
    let cols = cfg.cols.max(1);
    let scale = cfg.scale.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let cell_w = images.iter().map(|i| i.width).max().unwrap_or(1) as u32 * scale;
    let cell_h = images.iter().map(|i| i.height).max().unwrap_or(1) as u32 * scale;
    let captioned = |idx: usize| match labels.captions {
        Captions::Every => true,
        Captions::LastRow => idx / cols == rows - 1,
    };
    // Columns narrower than their captions widen, up to ten characters; longer captions wrap.
    let widest = (0..images.len())
        .filter(|&i| captioned(i))
        .filter_map(|i| labels.prompts.get(i))
        .map(|p| text_width(p.chars().count()))
        .max()
        .unwrap_or(0);
    let col_w = cell_w.max(widest.min(CAPTION_MIN_W));
    let chars = (col_w / CHAR_W) as usize;
    let caption = |idx: usize| -> Vec<String> {
        match labels.prompts.get(idx) {
            Some(p) if captioned(idx) => wrap(p, chars),
            _ => Vec::new(),
        }
    };
    let row_label = |r: usize| labels.rows.get(r).map(|l| wrap(l, LABEL_CHARS)).unwrap_or_default();
    let label_chars = (0..rows).flat_map(row_label).map(|l| l.chars().count()).max().unwrap_or(0);
    let label_w = if label_chars == 0 { 0 } else { text_width(label_chars) + 2 * cfg.spacing.max(2) };
    // Each row is as tall as its cells plus its longest caption, and at least as tall as its label.
    let row_h: Vec<u32> = (0..rows)
        .map(|r| {
            let lines = (r * cols..((r + 1) * cols).min(images.len())).map(|i| caption(i).len()).max().unwrap_or(0);
            let text = if lines == 0 { 0 } else { 2 + lines as u32 * LINE_H };
            (cell_h + text).max(row_label(r).len() as u32 * LINE_H)
        })
        .collect();
    let width = label_w + cols as u32 * col_w + (cols as u32 + 1) * cfg.spacing;
    let height = row_h.iter().sum::<u32>() + (rows as u32 + 1) * cfg.spacing;
    let mut out = image::RgbImage::from_pixel(width, height, image::Rgb(cfg.background));
    let [r, g, b] = cfg.background.map(u32::from);
    let ink = if 299 * r + 587 * g + 114 * b >= 128_000 { [0, 0, 0] } else { [255, 255, 255] };
    let mut y0 = cfg.spacing;
    for (row, h) in row_h.iter().enumerate() {
        let lines = row_label(row);
        let mut y = y0 + cell_h.saturating_sub(lines.len() as u32 * LINE_H) / 2;
        for line in &lines {
            draw_text(&mut out, cfg.spacing.max(2), y, line, ink);
            y += LINE_H;
        }
        for idx in row * cols..((row + 1) * cols).min(images.len()) {
            let x0 = label_w + (idx % cols) as u32 * (col_w + cfg.spacing) + cfg.spacing;
            let rgb = images[idx].to_rgb8();
            let xi = x0 + (col_w - rgb.width() * scale) / 2;
            for y in 0..rgb.height() * scale {
                for x in 0..rgb.width() * scale {
                    out.put_pixel(xi + x, y0 + y, *rgb.get_pixel(x / scale, y / scale));
                }
            }
            let mut y = y0 + cell_h + 2;
            for line in caption(idx) {
                draw_text(&mut out, x0 + (col_w - text_width(line.chars().count()).min(col_w)) / 2, y, &line, ink);
                y += LINE_H;
            }
        }
        y0 += h + cfg.spacing;
    }
    out
}

/// Writes images as a PNG grid with `cols` per row, 1-pixel grey gaps and no upscaling.
pub fn save_grid(images: &[Image], cols: usize, path: &Path) -> Result<(), image::ImageError> {
    let cfg = GridConfig { cols, spacing: 1, scale: 1, background: [128, 128, 128] };
    save_grid_with(images, &cfg, path)
}

/// Writes images as a PNG grid laid out by `cfg`.
pub fn save_grid_with(images: &[Image], cfg: &GridConfig, path: &Path) -> Result<(), image::ImageError> {
    grid_image(images, cfg).save_with_format(path, image::ImageFormat::Png)
}

/// Lays clips out as a frame strip: one row per clip, one column per frame (`cfg.cols` is ignored).
pub fn clip_strip(clips: &[Image], cfg: &GridConfig) -> image::RgbImage {
    let frames: Vec<Vec<Image>> = clips.iter().map(|c| split_frames(c).unwrap_or_else(|| vec![c.clone()])).collect();
    let cols = frames.iter().map(Vec::len).max().unwrap_or(1);
    let cells: Vec<Image> = frames.into_iter().flatten().collect();
    grid_image(&cells, &GridConfig { cols, ..cfg.clone() })
}

/// The frame strip of [`clip_strip`] with labels: `labels` describes the clips as laid out in a grid of
/// `cfg.cols` (as the GIF shows them); in the strip each clip's row is labelled with its grid row's label and
/// its prompt, and the frames of the last row are numbered from 0.
pub fn labelled_clip_strip(clips: &[Image], cfg: &GridConfig, labels: &GridLabels) -> image::RgbImage {
    let frames: Vec<Vec<Image>> = clips.iter().map(|c| split_frames(c).unwrap_or_else(|| vec![c.clone()])).collect();
    let cols = frames.iter().map(Vec::len).max().unwrap_or(1);
    let rows = (0..clips.len())
        .map(|k| {
            let model = labels.rows.get(k / cfg.cols.max(1)).map_or("", String::as_str);
            let prompt = labels.prompts.get(k).map_or("", String::as_str);
            [model, prompt].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(": ")
        })
        .collect();
    let prompts = frames.iter().flat_map(|f| (0..f.len()).map(|i| i.to_string())).collect();
    let cells: Vec<Image> = frames.into_iter().flatten().collect();
    let strip = GridLabels { rows, prompts, captions: Captions::LastRow };
    labelled_grid(&cells, &GridConfig { cols, ..cfg.clone() }, &strip)
}

/// Writes clips as an animated GIF that loops forever: frame `f` of the animation is the grid (laid out by
/// `cfg`) of every clip's frame `f`, shown for `delay_ms` milliseconds.
pub fn save_clip_gif(
    clips: &[Image],
    cfg: &GridConfig,
    labels: &GridLabels,
    delay_ms: u32,
    path: &Path,
) -> Result<(), image::ImageError> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let frames: Vec<Vec<Image>> = clips.iter().map(|c| split_frames(c).unwrap_or_else(|| vec![c.clone()])).collect();
    let n = frames.iter().map(Vec::len).max().unwrap_or(1);
    let file = std::fs::File::create(path).map_err(image::ImageError::IoError)?;
    let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
    enc.set_repeat(Repeat::Infinite)?;
    for f in 0..n {
        let cells: Vec<Image> = frames.iter().filter_map(|fs| fs.get(f).or(fs.last()).cloned()).collect();
        let rgba = image::DynamicImage::ImageRgb8(labelled_grid(&cells, cfg, labels)).into_rgba8();
        let delay = image::Delay::from_numer_denom_ms(delay_ms, 1);
        enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))?;
    }
    Ok(())
}
