//! The image type the whole engine shares: CHW `f32` in [-1, 1], with conversions to and from 8-bit RGB.

use std::path::Path;

/// An image in CHW layout with values in [-1, 1] (what the diffusion model consumes).
///
/// `data[c * height * width + y * width + x]` is channel `c` of pixel `(x, y)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Number of channels (3 for RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Pixel values, CHW, in [-1, 1].
    pub data: Vec<f32>,
}

impl Image {
    /// An RGB image of the given size filled with one colour given in [0, 1] units.
    pub fn filled(height: usize, width: usize, rgb01: [f32; 3]) -> Image {
        let mut data = Vec::with_capacity(3 * height * width);
        for v in rgb01 {
            data.extend(std::iter::repeat_n(v * 2.0 - 1.0, height * width));
        }
        Image { channels: 3, height, width, data }
    }

    /// Builds an RGB image from a function giving each pixel's colour in [0, 1] units.
    pub fn from_fn01(height: usize, width: usize, mut f: impl FnMut(usize, usize) -> [f32; 3]) -> Image {
        let plane = height * width;
        let mut data = vec![0.0; 3 * plane];
        for y in 0..height {
            for x in 0..width {
                let rgb = f(x, y);
                for c in 0..3 {
                    data[c * plane + y * width + x] = rgb[c].clamp(0.0, 1.0) * 2.0 - 1.0;
                }
            }
        }
        Image { channels: 3, height, width, data }
    }

    /// Pixel `(x, y)` as RGB in [0, 1] units (clamped). Images with fewer than 3 channels repeat channel 0.
    pub fn rgb01(&self, x: usize, y: usize) -> [f32; 3] {
        let plane = self.height * self.width;
        let idx = y * self.width + x;
        let get = |c: usize| {
            let c = if c < self.channels { c } else { 0 };
            let v = self.data.get(c * plane + idx).copied().unwrap_or(-1.0);
            ((v + 1.0) * 0.5).clamp(0.0, 1.0)
        };
        [get(0), get(1), get(2)]
    }

    /// Converts to 8-bit RGB (values clamped to [-1, 1]; NaN becomes 0).
    pub fn to_rgb8(&self) -> image::RgbImage {
        let (w, h) = (self.width as u32, self.height as u32);
        image::RgbImage::from_fn(w, h, |x, y| {
            let rgb = self.rgb01(x as usize, y as usize);
            image::Rgb(rgb.map(|v| if v.is_nan() { 0 } else { (v * 255.0).round() as u8 }))
        })
    }

    /// Converts an 8-bit RGB image to CHW in [-1, 1].
    pub fn from_rgb8(img: &image::RgbImage) -> Image {
        let (w, h) = (img.width() as usize, img.height() as usize);
        Image::from_fn01(h, w, |x, y| img.get_pixel(x as u32, y as u32).0.map(|v| v as f32 / 255.0))
    }

    /// Writes the image as a PNG file.
    pub fn save_png(&self, path: &Path) -> Result<(), image::ImageError> {
        self.to_rgb8().save_with_format(path, image::ImageFormat::Png)
    }
}

/// Concatenates images (all of one shape) into one `[n, c, h, w]` buffer, in order.
pub fn stack(images: &[&Image]) -> Vec<f32> {
    let mut out = Vec::with_capacity(images.iter().map(|i| i.data.len()).sum());
    for img in images {
        out.extend_from_slice(&img.data);
    }
    out
}
