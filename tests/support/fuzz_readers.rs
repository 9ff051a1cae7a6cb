//! A self-contained fuzz driver for the file readers: the Parquet preference reader
//! (`seppoc::data::parquet::read_fields`, with and without the optional reward columns), the checkpoint reader (`read_checkpoint_meta`, `load_checkpoint`) and the
//! imagefolder loader (`load_imagefolder`, mutating its `metadata.jsonl` and sometimes an image). Valid seed files
//! are made here, then mutated (bit flips, truncation, splices, byte insertions and deletions, interesting
//! integers, header-length edits) and read under `catch_unwind`. `examples/fuzz_readers.rs` runs the full
//! campaign; `tests/fuzz_readers.rs` runs a fixed-seed slice. Not part of the library: both include this file
//! with `#[path = ...] mod fuzz_readers;`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::data::parquet::{self, Comparison};
use seppoc::data::{World, WorldConfig};
use seppoc::device::cpu;
use seppoc::model::checkpoint::{load_checkpoint, read_checkpoint_meta, save_checkpoint, CheckpointMeta};
use seppoc::model::{Dit, DitConfig, ScheduleSpec};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The readers under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// `seppoc::data::parquet::read`.
    Parquet,
    /// `read_checkpoint_meta` then `load_checkpoint`.
    Checkpoint,
    /// `load_imagefolder` (mutated `metadata.jsonl`, sometimes a mutated image).
    Imagefolder,
}

impl Reader {
    /// Every reader, in campaign order.
    pub const ALL: [Reader; 3] = [Reader::Parquet, Reader::Checkpoint, Reader::Imagefolder];

    /// The name printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            Reader::Parquet => "parquet",
            Reader::Checkpoint => "checkpoint",
            Reader::Imagefolder => "imagefolder",
        }
    }
}

/// A crashing input: which file was mutated, its bytes, and the panic message.
#[derive(Clone, Debug)]
pub struct Crash {
    /// The file the bytes were written to (`input.parquet`, `model.safetensors`, `metadata.jsonl`, `a.png`).
    pub file: &'static str,
    /// The mutated file (for imagefolder with a mutated image: the image; the metadata is the seed's).
    pub bytes: Vec<u8>,
    /// The panic payload.
    pub message: String,
}

/// Outcome of one reader's campaign.
#[derive(Clone, Debug, Default)]
pub struct ReaderStats {
    /// Inputs run.
    pub inputs: u64,
    /// Inputs that panicked (each is a bug; the first few are kept in `crashes`).
    pub panics: u64,
    /// Inputs the reader accepted (a sanity check that mutation does not only make garbage).
    pub accepted: u64,
    /// Slowest input, in microseconds, and its bytes.
    pub max_micros: u64,
    /// The slowest input's bytes.
    pub slowest: Vec<u8>,
    /// Up to 10 crashing inputs.
    pub crashes: Vec<Crash>,
}

/// Valid seed files and a scratch folder the inputs are written to.
pub struct Seeds {
    dir: PathBuf,
    parquet: Vec<Vec<u8>>,
    checkpoint: Vec<Vec<u8>>,
    metadata: Vec<Vec<u8>>,
    png: Vec<u8>,
}

/// The image side the readers are asked for (small, so a campaign is fast).
const SIDE: usize = 8;

/// A row of two rendered web examples of the shapes world at `side` pixels; the caption is the first one's.
fn comparison(world: &World, rng: &mut ChaCha8Rng, label_0: f64) -> Comparison {
    let (first, caption) = world.web_example(rng);
    let (second, _) = world.web_example(rng);
    let strings = |a: &str, b: &str| [a.to_string(), b.to_string()];
    Comparison {
        caption,
        images: [first, second],
        label_0,
        models: strings("base", "gen_clean"),
        judge: [0.5, 0.25],
        ranking_id: 7,
        user_id: 1,
        num_example_per_prompt: 1,
    }
}

/// The shapes world at `side` pixels.
fn world(side: usize) -> World {
    World::new(WorldConfig { image_size: side, ..WorldConfig::default_16() }).expect("a valid world")
}

impl Seeds {
    /// Makes the seed files in a fresh folder `dir` (removed on drop).
    pub fn new(dir: &Path) -> Seeds {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("scratch folder is writable");
        let path = dir.join("seed.parquet");
        let mut parquet = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for (labels, side, meta) in [
            (&[1.0, 0.0][..], SIDE, None),
            (&[1.0, 0.5, 0.0, 1.0][..], SIDE, Some("{\"collect\": 1}")),
            (&[0.0][..], 12, None),
        ] {
            let w = world(side);
            let rows: Vec<Comparison> = labels.iter().map(|&l| comparison(&w, &mut rng, l)).collect();
            parquet::write(&path, &rows, meta).expect("seed parquet written");
            parquet.push(std::fs::read(&path).expect("seed parquet read"));
        }
        let path = dir.join("seed.safetensors");
        let dev = cpu();
        let mut checkpoint = Vec::new();
        for (s, seed) in [(SIDE, 0u64), (16, 1)] {
            let model = Dit::new(&DitConfig::tiny(s, 10, 4), &dev, seed).expect("tiny model");
            let mut meta = CheckpointMeta::new("image", "{\"image_size\": 8}".into(), ScheduleSpec::default_linear());
            meta.step = seed * 7;
            save_checkpoint(&path, &model, &meta).expect("seed checkpoint written");
            checkpoint.push(std::fs::read(&path).expect("seed checkpoint read"));
        }
        let png_path = dir.join("seed.png");
        world(SIDE).web_example(&mut rng).0.save_png(&png_path).expect("seed png written");
        let png = std::fs::read(&png_path).expect("seed png read");
        let metadata = vec![
            b"{\"file_name\": \"a.png\", \"text\": \"a red circle\", \"loser_file_name\": \"b.png\"}\n".to_vec(),
            b"{\"file_name\": \"a.png\", \"text\": \"a blue square\"}\n\n{\"file_name\": \"b.png\", \"text\": \"x\", \"loser_file_name\": null}\n"
                .to_vec(),
        ];
        Seeds { dir: dir.to_path_buf(), parquet, checkpoint, metadata, png }
    }

    fn corpus(&self, reader: Reader) -> &[Vec<u8>] {
        match reader {
            Reader::Parquet => &self.parquet,
            Reader::Checkpoint => &self.checkpoint,
            Reader::Imagefolder => &self.metadata,
        }
    }
}

impl Drop for Seeds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Integers that tend to break length and offset arithmetic.
const INTERESTING: [u64; 14] = [
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Overwrites `width` bytes at `at` (clamped) with `value`, little-endian.
fn put(data: &mut [u8], at: usize, width: usize, value: u64) {
    for (k, byte) in value.to_le_bytes().into_iter().take(width).enumerate() {
        if let Some(b) = data.get_mut(at + k) {
            *b = byte;
        }
    }
}

/// A length near the real one or an interesting one.
fn length_like(rng: &mut ChaCha8Rng, real: u64) -> u64 {
    match rng.gen_range(0..4) {
        0 => INTERESTING[rng.gen_range(0..INTERESTING.len())],
        1 => real.wrapping_add(rng.gen_range(1..=16)),
        2 => real.wrapping_sub(rng.gen_range(1..=16)),
        _ => rng.gen_range(0..real.saturating_mul(2).max(1)),
    }
}

/// Edits the length field of the format's header: safetensors' leading u64, Parquet's footer u32, or (for JSON
/// lines) a number in the text.
fn edit_header_length(rng: &mut ChaCha8Rng, reader: Reader, data: &mut Vec<u8>) {
    match reader {
        Reader::Checkpoint if data.len() >= 8 => {
            let real = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
            put(data, 0, 8, length_like(rng, real));
        }
        Reader::Parquet if data.len() >= 8 => {
            let at = data.len() - 8;
            let real = u32::from_le_bytes(data[at..at + 4].try_into().unwrap_or([0; 4])) as u64;
            put(data, at, 4, length_like(rng, real));
        }
        _ => {
            let text = format!("{}", INTERESTING[rng.gen_range(0..INTERESTING.len())]);
            let at = rng.gen_range(0..=data.len());
            data.splice(at..at, text.into_bytes());
        }
    }
}

/// Applies one to four stacked mutations to a copy of `seed`; `corpus` supplies splice material.
pub fn mutate(rng: &mut ChaCha8Rng, reader: Reader, seed: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = data.len();
        match rng.gen_range(0..9) {
            // Bit flips.
            0 if len > 0 => {
                for _ in 0..rng.gen_range(1..=8) {
                    let at = rng.gen_range(0..len);
                    data[at] ^= 1 << rng.gen_range(0..8);
                }
            }
            // Truncation.
            1 => data.truncate(rng.gen_range(0..=len)),
            // Splice: a chunk of another seed replaces a chunk here.
            2 => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                if !other.is_empty() {
                    let from = rng.gen_range(0..other.len());
                    let n = rng.gen_range(1..=(other.len() - from).min(256));
                    let at = rng.gen_range(0..=len);
                    let end = (at + rng.gen_range(0..=n)).min(len);
                    data.splice(at..end, other[from..from + n].iter().copied());
                }
            }
            // Byte insertions.
            3 => {
                let at = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=32);
                let fill: Vec<u8> = match rng.gen_range(0..3) {
                    0 => (0..n).map(|_| rng.gen()).collect(),
                    1 => vec![0; n],
                    _ => vec![0xff; n],
                };
                data.splice(at..at, fill);
            }
            // Deletion of a range.
            4 if len > 0 => {
                let at = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - at).min(64));
                data.drain(at..at + n);
            }
            // An interesting integer over 1, 2, 4 or 8 bytes.
            5 if len > 0 => {
                let at = rng.gen_range(0..len);
                let width = [1, 2, 4, 8][rng.gen_range(0..4)];
                put(&mut data, at, width, INTERESTING[rng.gen_range(0..INTERESTING.len())]);
            }
            // Header-length edits.
            6 | 7 => edit_header_length(rng, reader, &mut data),
            // A duplicated chunk (repeated records, repeated pages).
            _ if len > 0 => {
                let at = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - at).min(512));
                let chunk = data[at..at + n].to_vec();
                let to = rng.gen_range(0..=data.len());
                data.splice(to..to, chunk);
            }
            _ => {}
        }
    }
    data
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Writes `bytes` where `reader` reads them and reads them; `Ok(accepted)` or `Err(panic message)`.
/// For imagefolder, `image` (when given) replaces `a.png`.
pub fn run_one(seeds: &Seeds, reader: Reader, bytes: &[u8], image: Option<&[u8]>) -> Result<bool, String> {
    let dir = &seeds.dir;
    let outcome = match reader {
        Reader::Parquet => {
            let path = dir.join("input.parquet");
            std::fs::write(&path, bytes).expect("scratch folder is writable");
            // Every other input also reads the optional reward column (the seed's `judge_0`, `judge_1`).
            let needs = seppoc::data::FieldNeeds { reward: bytes.len().is_multiple_of(2), weight: false };
            catch_unwind(AssertUnwindSafe(|| parquet::read_fields(&path, SIDE, needs).is_ok()))
        }
        Reader::Checkpoint => {
            let path = dir.join("model.safetensors");
            std::fs::write(&path, bytes).expect("scratch folder is writable");
            catch_unwind(AssertUnwindSafe(|| {
                let meta = read_checkpoint_meta(&path).is_ok();
                let model = load_checkpoint(&path, &cpu()).is_ok();
                meta && model
            }))
        }
        Reader::Imagefolder => {
            let folder = dir.join("folder");
            std::fs::create_dir_all(&folder).expect("scratch folder is writable");
            std::fs::write(folder.join("metadata.jsonl"), bytes).expect("scratch folder is writable");
            std::fs::write(folder.join("a.png"), image.unwrap_or(&seeds.png)).expect("scratch folder is writable");
            std::fs::write(folder.join("b.png"), &seeds.png).expect("scratch folder is writable");
            catch_unwind(AssertUnwindSafe(|| seppoc::data::load_imagefolder(&folder, SIDE).is_ok()))
        }
    };
    outcome.map_err(|p| payload_message(p.as_ref()))
}

/// Runs `n` mutated inputs through `reader`, seeded by `seed`.
pub fn campaign(seeds: &Seeds, reader: Reader, n: u64, seed: u64) -> ReaderStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (reader as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let corpus = seeds.corpus(reader);
    let mut stats = ReaderStats::default();
    for _ in 0..n {
        let base = &corpus[rng.gen_range(0..corpus.len())];
        // Imagefolder: a quarter of the inputs mutate the image and keep the seed metadata.
        let mutate_image = reader == Reader::Imagefolder && rng.gen_range(0..4) == 0;
        let (file, bytes, image) = if mutate_image {
            let png = mutate(&mut rng, Reader::Parquet, &seeds.png, std::slice::from_ref(&seeds.png));
            ("a.png", base.clone(), Some(png))
        } else {
            let file = match reader {
                Reader::Parquet => "input.parquet",
                Reader::Checkpoint => "model.safetensors",
                Reader::Imagefolder => "metadata.jsonl",
            };
            (file, mutate(&mut rng, reader, base, corpus), None)
        };
        let started = Instant::now();
        let outcome = run_one(seeds, reader, &bytes, image.as_deref());
        let micros = started.elapsed().as_micros() as u64;
        let input = image.unwrap_or(bytes);
        stats.inputs += 1;
        if micros > stats.max_micros {
            stats.max_micros = micros;
            stats.slowest = input.clone();
        }
        match outcome {
            Ok(accepted) => stats.accepted += u64::from(accepted),
            Err(message) => {
                stats.panics += 1;
                if stats.crashes.len() < 10 {
                    stats.crashes.push(Crash { file, bytes: input, message });
                }
            }
        }
    }
    stats
}
