//! Loading imagefolder data sets: valid folders with and without pairs, and one test per error variant.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::data::{load_imagefolder, Image, LoadError, World, WorldConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh empty folder under the system temp dir, removed when dropped.
struct Fixture(PathBuf);

impl Fixture {
    fn new() -> Fixture {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("seppoc-imagefolder-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Fixture(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> &Fixture {
        std::fs::write(self.0.join(name), bytes).expect("temp dir is writable");
        self
    }

    fn png(&self, name: &str, size: usize, seed: u64) -> &Fixture {
        let w = World::new(WorldConfig { image_size: size, ..WorldConfig::default_16() }).expect("valid");
        let (img, _) = w.web_example(&mut ChaCha8Rng::seed_from_u64(seed));
        img.save_png(&self.0.join(name)).expect("temp dir is writable");
        self
    }

    fn load(&self) -> Result<seppoc::data::PreferenceSet, LoadError> {
        load_imagefolder(&self.0, 16)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn meta(lines: &[&str]) -> Vec<u8> {
    lines.join("\n").into_bytes()
}

#[test]
fn loads_winners_only() {
    let f = Fixture::new();
    f.png("a.png", 16, 1).png("b.png", 16, 2).write(
        "metadata.jsonl",
        &meta(&[
            r#"{"file_name": "a.png", "text": "a red circle"}"#,
            "",
            r#"{"file_name": "b.png", "text": "x", "extra": 3}"#,
            "",
        ]),
    );
    let set = f.load().expect("valid folder");
    assert_eq!(set.len(), 2);
    assert!(!set.has_pairs());
    assert_eq!(set.items[0].prompt, "a red circle");
    let img: &Image = &set.items[0].winner;
    assert_eq!((img.channels, img.height, img.width), (3, 16, 16));
    // PNG is 8-bit, so a round trip is exact up to quantisation.
    let w = World::new(WorldConfig::default_16()).expect("valid");
    let (orig, _) = w.web_example(&mut ChaCha8Rng::seed_from_u64(1));
    assert!(orig.data.iter().zip(&img.data).all(|(a, b)| (a - b).abs() <= 1.0 / 255.0 + 1e-6));
}

#[test]
fn loads_pairs() {
    let f = Fixture::new();
    f.png("w.png", 16, 1)
        .png("l.png", 16, 2)
        .write("metadata.jsonl", &meta(&[r#"{"file_name": "w.png", "text": "t", "loser_file_name": "l.png"}"#]));
    let set = f.load().expect("valid folder");
    assert!(set.has_pairs());
    assert_ne!(Some(&set.items[0].winner), set.items[0].loser.as_ref());
}

#[test]
fn missing_metadata() {
    let f = Fixture::new();
    assert_eq!(f.load(), Err(LoadError::MissingMetadata { path: f.path("metadata.jsonl") }));
}

#[test]
fn empty_set() {
    let f = Fixture::new();
    f.write("metadata.jsonl", b"\n  \n");
    assert_eq!(f.load(), Err(LoadError::Empty { path: f.path("metadata.jsonl") }));
}

#[test]
fn bad_json_names_the_line() {
    let f = Fixture::new();
    f.png("a.png", 16, 1)
        .write("metadata.jsonl", &meta(&[r#"{"file_name": "a.png", "text": "t"}"#, r#"{"file_name": "#]));
    match f.load() {
        Err(LoadError::BadJson { path, line: 2, .. }) => assert_eq!(path, f.path("metadata.jsonl")),
        other => panic!("{other:?}"),
    }
    f.write("metadata.jsonl", b"[1, 2]");
    assert!(matches!(f.load(), Err(LoadError::BadJson { line: 1, .. })));
}

#[test]
fn missing_or_mistyped_fields() {
    let f = Fixture::new();
    f.png("a.png", 16, 1);
    let case = |line: &str| {
        f.write("metadata.jsonl", line.as_bytes());
        f.load()
    };
    let missing = |field| Err(LoadError::MissingField { path: f.path("metadata.jsonl"), line: 1, field });
    assert_eq!(case(r#"{"file_name": "a.png"}"#), missing("text"));
    assert_eq!(case(r#"{"text": "t"}"#), missing("file_name"));
    assert_eq!(case(r#"{"file_name": 3, "text": "t"}"#), missing("file_name"));
    assert_eq!(case(r#"{"file_name": "a.png", "text": "t", "loser_file_name": 1}"#), missing("loser_file_name"));
    assert!(case(r#"{"file_name": "a.png", "text": "t", "loser_file_name": null}"#).is_ok());
}

#[test]
fn missing_image_names_file_and_line() {
    let f = Fixture::new();
    f.png("a.png", 16, 1).write(
        "metadata.jsonl",
        &meta(&[
            r#"{"file_name": "a.png", "text": "t"}"#,
            r#"{"file_name": "a.png", "text": "t", "loser_file_name": "gone.png"}"#,
        ]),
    );
    assert_eq!(f.load(), Err(LoadError::MissingImage { path: f.path("gone.png"), line: 2 }));
    f.write("metadata.jsonl", br#"{"file_name": "../a.png", "text": "t"}"#);
    assert!(matches!(f.load(), Err(LoadError::MissingImage { line: 1, .. })));
}

#[test]
fn non_image_bytes() {
    let f = Fixture::new();
    f.write("a.png", b"not a png at all").write("metadata.jsonl", br#"{"file_name": "a.png", "text": "t"}"#);
    match f.load() {
        Err(LoadError::NotAnImage { path, .. }) => assert_eq!(path, f.path("a.png")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_size_is_not_resized() {
    let f = Fixture::new();
    f.png("big.png", 24, 1).write("metadata.jsonl", br#"{"file_name": "big.png", "text": "t"}"#);
    let err = f.load().expect_err("24x24 is not 16x16");
    assert_eq!(err, LoadError::WrongSize { path: f.path("big.png"), expected: 16, found: (24, 24) });
    assert!(err.to_string().contains("24x24"), "{err}");
}

#[test]
fn bad_utf8_names_the_line() {
    let f = Fixture::new();
    let mut bytes = br#"{"file_name": "a.png", "text": "t"}"#.to_vec();
    bytes.extend_from_slice(b"\n{\"file_name\": \"a.png\", \"text\": \"caf\xe9\"}\n");
    f.png("a.png", 16, 1).write("metadata.jsonl", &bytes);
    assert_eq!(f.load(), Err(LoadError::BadUtf8 { path: f.path("metadata.jsonl"), line: 2 }));
}

#[test]
fn messages_are_lowercase_and_name_the_file() {
    let errs = [
        LoadError::MissingMetadata { path: "d/metadata.jsonl".into() },
        LoadError::BadJson { path: "d/metadata.jsonl".into(), line: 3, message: "eof".into() },
        LoadError::MissingField { path: "d/metadata.jsonl".into(), line: 3, field: "text" },
        LoadError::MissingImage { path: "d/x.png".into(), line: 3 },
        LoadError::BadUtf8 { path: "d/metadata.jsonl".into(), line: 3 },
    ];
    for e in errs {
        let s = e.to_string();
        assert!(s.starts_with(|c: char| !c.is_uppercase()) && !s.ends_with('.'), "{s}");
        let has_line = !matches!(e, LoadError::MissingMetadata { .. });
        assert!(s.contains("d/") && (!has_line || s.contains('3')), "{s}");
    }
}

#[test]
fn grayscale_and_rgba_pngs_load_as_rgb() {
    let f = Fixture::new();
    image::GrayImage::from_pixel(16, 16, image::Luma([255])).save(f.path("g.png")).expect("writable");
    image::RgbaImage::from_pixel(16, 16, image::Rgba([0, 0, 0, 10])).save(f.path("r.png")).expect("writable");
    f.write("metadata.jsonl", &meta(&[r#"{"file_name": "g.png", "text": "t", "loser_file_name": "r.png"}"#]));
    let set = f.load().expect("valid folder");
    assert!(set.items[0].winner.data.iter().all(|v| *v == 1.0));
    assert!(set.items[0].loser.as_ref().is_some_and(|l| l.data.iter().all(|v| *v == -1.0)));
}
