//! PNG grids of images, for `seppoc sample` and `seppoc eval`.

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
