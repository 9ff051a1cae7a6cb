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

/// Writes clips as an animated GIF that loops forever: frame `f` of the animation is the grid (laid out by
/// `cfg`) of every clip's frame `f`, shown for `delay_ms` milliseconds.
pub fn save_clip_gif(clips: &[Image], cfg: &GridConfig, delay_ms: u32, path: &Path) -> Result<(), image::ImageError> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let frames: Vec<Vec<Image>> = clips.iter().map(|c| split_frames(c).unwrap_or_else(|| vec![c.clone()])).collect();
    let n = frames.iter().map(Vec::len).max().unwrap_or(1);
    let file = std::fs::File::create(path).map_err(image::ImageError::IoError)?;
    let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
    enc.set_repeat(Repeat::Infinite)?;
    for f in 0..n {
        let cells: Vec<Image> = frames.iter().filter_map(|fs| fs.get(f).or(fs.last()).cloned()).collect();
        let rgba = image::DynamicImage::ImageRgb8(grid_image(&cells, cfg)).into_rgba8();
        let delay = image::Delay::from_numer_denom_ms(delay_ms, 1);
        enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))?;
    }
    Ok(())
}
