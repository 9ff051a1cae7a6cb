//! Line plots as PNG files (plotters drawing into an RGB buffer, encoded by the `image` crate).
//!
//! Text is drawn with DejaVu Sans from the `dejavu` crate through plotters' `ab_glyph` backend, so plots need
//! no system fonts (the CI machine has none to rely on).

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// One named line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Index into the colour palette (the same objective gets the same colour in every plot).
    pub colour: usize,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (900, 560);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is a valid TrueType font; failure would be a bug in the `dejavu` crate.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// The range of all y values padded by 5 % (a unit range around a single value).
fn y_range(series: &[Series], extra: &[f64]) -> (f64, f64) {
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain(extra.iter().copied());
    let (lo, hi) =
        ys.filter(|y| y.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| (l.min(y), h.max(y)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}

/// Draws `series` (and optionally a dashed horizontal reference line) and writes a PNG atomically.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    hline: Option<(&str, f64)>,
) -> anyhow::Result<()> {
    register_font();
    let (w, h) = SIZE;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let x_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let (y_lo, y_hi) = y_range(series, &hline.map(|h| vec![h.1]).unwrap_or_default());
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing `{}`: {e:?}", path.display());
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, y_lo..y_hi)
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 14)).draw().map_err(err)?;
        if let Some((label, y)) = hline {
            chart
                .draw_series(DashedLineSeries::new(vec![(0.0, y), (x_max, y)], 8, 6, BLACK.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        }
        for s in series {
            let colour = Palette99::pick(s.colour).to_rgba().stroke_width(2);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), colour))
                .map_err(err)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).context("plot buffer has the wrong size")?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp.png");
    let tmp = std::path::PathBuf::from(tmp);
    img.save(&tmp).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))
}
