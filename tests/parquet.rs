//! Preference data in the Pick-a-Pic Parquet schema: what seppoc writes reads back; files shaped like the real
//! data set (JPEG bytes at another resolution, extra columns, large strings, the Hugging Face image struct, ties)
//! read; every bad file is an error naming the file and the column or row, never a panic.

#[path = "support/columns.rs"]
mod columns;
use arrow_array::{ArrayRef, BinaryArray, Float64Array, LargeStringArray, StringArray, StructArray};
use arrow_schema::{DataType, Field};
use columns::write_columns;
use seppoc::data::parquet::{decode_image, read, write, Comparison, ParquetError};
use seppoc::data::Image;
use std::path::PathBuf;
use std::sync::Arc;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("seppoc-parquet-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn image(seed: usize, side: usize) -> Image {
    Image::from_fn01(side, side, |y, x| {
        let v = ((x * 7 + y * 3 + seed * 11) % 17) as f32 / 16.0;
        [v, 1.0 - v, (seed % 3) as f32 / 2.0]
    })
}

fn comparison(i: usize, label_0: f64) -> Comparison {
    Comparison {
        caption: format!("a red circle number {i}"),
        images: [image(2 * i, 16), image(2 * i + 1, 16)],
        label_0,
        models: ["weak".into(), "strong".into()],
        judge: [0.25, 0.5],
        ranking_id: i as i64 / 2,
        user_id: 0,
        num_example_per_prompt: 2,
    }
}

#[test]
fn what_seppoc_writes_reads_back_with_ties_apart() {
    let path = dir().join("round.parquet");
    let rows: Vec<Comparison> = [1.0, 0.0, 0.5, 1.0].iter().enumerate().map(|(i, &l)| comparison(i, l)).collect();
    write(&path, &rows, Some("{\"collect\": 1}")).expect("written");
    assert!(!path.with_extension("parquet.tmp").exists(), "no temporary file is left");
    let data = read(&path, 16).expect("read back");
    assert_eq!((data.rows, data.ties.len(), data.pairs.len(), data.unlabelled), (4, 1, 3, 0));
    assert_eq!(data.metadata.as_deref(), Some("{\"collect\": 1}"));
    // label_0 = 1: image 0 won; label_0 = 0: image 1 won. PNG bytes hold 8 bits per channel.
    let close = |a: &Image, b: &Image| a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() <= 1.0 / 255.0 + 1e-6);
    let first = &data.pairs.items[0];
    assert!(close(&first.winner, &rows[0].images[0]) && close(first.loser.as_ref().expect("pair"), &rows[0].images[1]));
    let second = &data.pairs.items[1];
    assert!(close(&second.winner, &rows[1].images[1]), "label_0 = 0 means image 1 won");
    assert_eq!(second.prompt, "a red circle number 1");
    assert_eq!(data.ties[0].prompt, "a red circle number 2");
}

/// Writes a batch built from `columns` as a Parquet file.
fn jpeg(seed: usize, side: usize) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image(seed, side).to_rgb8().write_to(&mut out, image::ImageFormat::Jpeg).expect("jpeg");
    out.into_inner()
}

#[test]
fn real_shaped_files_read_jpeg_at_any_resolution_extra_columns_and_image_structs() {
    let path = dir().join("real.parquet");
    let captions = LargeStringArray::from(vec!["a corgi astronaut, trending on artstation", "a red circle", "tie me"]);
    let jpg0: Vec<Vec<u8>> = vec![jpeg(1, 64), jpeg(2, 48), jpeg(3, 40)];
    let jpg1 = BinaryArray::from_iter_values([jpeg(4, 64), jpeg(5, 32), jpeg(6, 16)].iter());
    // Hugging Face's image feature: a struct of the encoded bytes and a path.
    let bytes: ArrayRef = Arc::new(BinaryArray::from_iter_values(jpg0.iter()));
    let paths: ArrayRef = Arc::new(StringArray::from(vec!["a.jpg", "b.jpg", "c.jpg"]));
    let jpg0 = StructArray::from(vec![
        (Arc::new(Field::new("bytes", DataType::Binary, true)), bytes),
        (Arc::new(Field::new("path", DataType::Utf8, true)), paths),
    ]);
    write_columns(
        &path,
        vec![
            ("created_at", Arc::new(StringArray::from(vec!["2023-04-01"; 3])) as ArrayRef),
            ("caption", Arc::new(captions)),
            ("jpg_0", Arc::new(jpg0)),
            ("jpg_1", Arc::new(jpg1)),
            ("label_0", Arc::new(Float64Array::from(vec![0.0, 1.0, 0.5]))),
            ("label_1", Arc::new(Float64Array::from(vec![1.0, 0.0, 0.5]))),
            ("user_id", Arc::new(arrow_array::Int64Array::from(vec![7, 8, 9]))),
        ],
    );
    let data = read(&path, 16).expect("real-shaped file reads");
    assert_eq!((data.pairs.len(), data.ties.len()), (2, 1));
    for item in &data.pairs.items {
        assert_eq!((item.winner.width, item.winner.height, item.winner.channels), (16, 16, 3));
    }
    assert_eq!(data.pairs.items[0].prompt, "a corgi astronaut, trending on artstation");
}

#[test]
fn images_are_centre_cropped_and_resized() {
    let mut wide = image::RgbImage::new(64, 32);
    for (x, _, p) in wide.enumerate_pixels_mut() {
        *p = if (16..48).contains(&x) { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) };
    }
    let mut png = std::io::Cursor::new(Vec::new());
    wide.write_to(&mut png, image::ImageFormat::Png).expect("png");
    let img = decode_image(png.get_ref(), 8).expect("decodes");
    // The centre square is all red: the blue margins are cropped away.
    assert!((0..8).all(|y| (0..8).all(|x| img.rgb01(x, y)[0] > 0.99 && img.rgb01(x, y)[2] < 0.01)));
    assert!(decode_image(b"not an image", 8).is_err());
}

#[test]
fn bad_files_are_errors_naming_file_column_or_row() {
    let d = dir();
    let good = |n: usize| -> Vec<(&'static str, ArrayRef)> {
        vec![
            ("caption", Arc::new(StringArray::from(vec!["a red circle"; n])) as ArrayRef),
            ("jpg_0", Arc::new(BinaryArray::from_iter_values((0..n).map(|i| jpeg(i, 16))))),
            ("jpg_1", Arc::new(BinaryArray::from_iter_values((0..n).map(|i| jpeg(i + 9, 16))))),
            ("label_0", Arc::new(Float64Array::from(vec![1.0; n]))),
        ]
    };
    let with = |n: usize, name: &'static str, col: ArrayRef| -> Vec<(&'static str, ArrayRef)> {
        good(n).into_iter().map(|(k, v)| if k == name { (k, col.clone()) } else { (k, v) }).collect()
    };
    type Case = (&'static str, Vec<(&'static str, ArrayRef)>, &'static str);
    let cases: Vec<Case> = vec![
        ("missing", good(2).into_iter().filter(|(k, _)| *k != "label_0").collect(), "no column `label_0`"),
        ("label", with(3, "label_0", Arc::new(Float64Array::from(vec![1.0, 0.7, 0.0]))), "row 1: label_0 is 0.7"),
        (
            "bytes",
            with(2, "jpg_1", Arc::new(BinaryArray::from_iter_values([jpeg(1, 16), b"garbage".to_vec()].iter()))),
            "row 1: `jpg_1` is not a decodable image",
        ),
        ("null", with(2, "caption", Arc::new(StringArray::from(vec![Some("a"), None]))), "row 1: `caption` is null"),
        ("type", with(2, "label_0", Arc::new(StringArray::from(vec!["1", "0"]))), "column `label_0` holds Utf8"),
        ("ties", with(2, "label_0", Arc::new(Float64Array::from(vec![0.5, 0.5]))), "no decided comparison (2 rows)"),
        ("empty", good(0), "no decided comparison (0 rows)"),
    ];
    for (name, columns, want) in cases {
        let path = d.join(format!("{name}.parquet"));
        write_columns(&path, columns);
        let err = read(&path, 16).expect_err(name).to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains(want), "{name}: {err}");
    }
    // Not Parquet, truncated, missing.
    let good_path = d.join("good.parquet");
    write_columns(&good_path, good(3));
    assert_eq!(read(&good_path, 16).expect("good").pairs.len(), 3);
    let bytes = std::fs::read(&good_path).expect("bytes");
    for (name, content) in [("truncated", &bytes[..bytes.len() / 2]), ("text", &b"caption,label_0\nx,1\n"[..])] {
        let path = d.join(format!("{name}.parquet"));
        std::fs::write(&path, content).expect("write");
        let err = read(&path, 16).expect_err(name);
        assert!(matches!(err, ParquetError::NotParquet { .. }), "{name}: {err}");
        assert!(err.to_string().contains("not a readable Parquet file"), "{err}");
    }
    let err = read(&d.join("absent.parquet"), 16).expect_err("absent");
    assert!(matches!(err, ParquetError::Io { .. }) && err.to_string().contains("absent.parquet"), "{err}");
}

#[test]
fn clips_round_trip_as_frame_strips_and_a_picture_that_is_no_strip_names_its_row() {
    use seppoc::data::parquet::read_clips;
    use seppoc::data::video::join_frames;
    let clip = |seed: usize| join_frames(&[image(seed, 16), image(seed + 1, 16), image(seed + 2, 16)]);
    let mut row = comparison(0, 0.0);
    row.images = [clip(0), clip(5)];
    let path = dir().join("clips.parquet");
    write(&path, &[row.clone()], None).expect("written");
    let data = read_clips(&path, 16, 3, Default::default()).expect("reads as 3-frame clips");
    let winner = &data.pairs.items[0].winner;
    assert_eq!((winner.channels, winner.height, winner.width), (9, 16, 16));
    assert!(winner.data.iter().zip(&row.images[1].data).all(|(x, y)| (x - y).abs() <= 1.0 / 255.0 + 1e-6));
    // Read as 2-frame clips the 48×16 strip is no strip of square frames; square images are none either.
    let err = read_clips(&path, 16, 2, Default::default()).expect_err("wrong frame count").to_string();
    assert!(err.contains("row 0") && err.contains("jpg_0") && err.contains("48x16"), "{err}");
    let square = dir().join("square.parquet");
    write(&square, &[comparison(0, 1.0)], None).expect("written");
    let err = read_clips(&square, 16, 4, Default::default()).expect_err("images are not clips").to_string();
    assert!(err.contains("a clip of 4 frames"), "{err}");
}
