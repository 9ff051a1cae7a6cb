//! A self-contained fuzz driver for the front end: grammar-aware generation, mutation of the shipped corpus,
//! and raw bytes, each run through parse → check → lower → format under `catch_unwind`, with a per-input
//! time budget. `examples/fuzz.rs` runs the full campaign; `tests/fuzz.rs` runs a fixed-seed slice. Not part of
//! the library: both include this file with `#[path = ...] mod fuzz;`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::frontend::frontend;
use seppoc::source::SourceFile;
use seppoc::syntax;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Outcome of a campaign.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FuzzStats {
    /// Inputs run.
    pub inputs: u64,
    /// Inputs that panicked (each is a bug; the first few are kept in `crashes`).
    pub panics: u64,
    /// Inputs slower than the per-input budget.
    pub slow: u64,
    /// Inputs the checker accepted (a sanity check that generation reaches deep code).
    pub accepted: u64,
    /// Slowest input, in microseconds.
    pub max_micros: u64,
    /// Up to 10 crashing inputs, for `tests/ui`.
    pub crashes: Vec<Vec<u8>>,
}

/// Runs `n` inputs from `seed`, mixing generated programs, mutated corpus files and raw bytes in equal parts.
pub fn campaign(corpus: &[String], n: u64, seed: u64, budget: Duration) -> FuzzStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stats = FuzzStats::default();
    for k in 0..n {
        let input = match k % 3 {
            0 => generate(&mut rng).into_bytes(),
            1 if !corpus.is_empty() => mutate(&corpus[rng.gen_range(0..corpus.len())], &mut rng),
            _ => (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect(),
        };
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_one(&input)));
        let took = started.elapsed();
        stats.inputs += 1;
        stats.max_micros = stats.max_micros.max(took.as_micros() as u64);
        if took > budget {
            stats.slow += 1;
        }
        match outcome {
            Ok(true) => stats.accepted += 1,
            Ok(false) => {}
            Err(_) => {
                stats.panics += 1;
                if stats.crashes.len() < 10 {
                    stats.crashes.push(input);
                }
            }
        }
    }
    stats
}

/// One input through every front-end stage; returns whether the checker accepted it.
pub fn run_one(bytes: &[u8]) -> bool {
    let (file, diag) = SourceFile::from_bytes("fuzz.obj", bytes);
    if diag.is_some() {
        return false;
    }
    let (ast, _) = syntax::parse(&file);
    let text = syntax::format(&ast);
    let _ = syntax::parse(&SourceFile::new("fuzz.obj", text));
    match frontend(&file) {
        Ok(checked) => {
            let obj = seppoc::ir::lower(&checked);
            let _ = obj.explain();
            true
        }
        Err(diags) => {
            let _ = seppoc::diag::render(&diags, &file, seppoc::diag::Style::Plain);
            false
        }
    }
}

const WORDS: &[&str] = &[
    "policy",
    "winner",
    "loser",
    "prompt",
    "ref",
    "x",
    "d",
    "s",
    "beta",
    "inf",
    "err",
    "logratio",
    "sample",
    "mean",
    "sum",
    "logsigmoid",
    "sigmoid",
    "softplus",
    "relu",
    "exp",
    "log",
    "log1p",
    "square",
    "abs",
    "min",
    "max",
    "clamp",
    "sign",
    "indicator",
    "where",
    "stopgrad",
    "tie",
    "steps",
    "cfg",
    "eta",
    "sampler",
    "ddim",
    "ddpm",
    "expm1",
    "sqrt",
    "tanh",
    "pow",
    "dist",
    "draws",
    "draw",
    "timestep",
    "alpha",
    "sigma",
    "snr",
    "progress",
    "reward",
    "label",
    "weight",
    "image",
    "num_timesteps",
];

fn expr(rng: &mut ChaCha8Rng, depth: u32) -> String {
    if depth == 0 || rng.gen_bool(0.3) {
        return match rng.gen_range(0..3) {
            0 => format!("{}", rng.gen_range(0..5000)),
            1 => format!("{:?}", rng.gen_range(0.0..3.0f64)),
            _ => WORDS[rng.gen_range(0..WORDS.len())].to_string(),
        };
    }
    match rng.gen_range(0..5) {
        0 => format!("-{}", expr(rng, depth - 1)),
        1 => {
            let ops = ["+", "-", "*", "/", "<", ">", "==", "<=", "!="];
            format!("{} {} {}", expr(rng, depth - 1), ops[rng.gen_range(0..ops.len())], expr(rng, depth - 1))
        }
        2 => format!("({})", expr(rng, depth - 1)),
        _ => {
            let f = WORDS[rng.gen_range(10..WORDS.len())];
            let args: Vec<String> = (0..rng.gen_range(0..4))
                .map(|_| {
                    if rng.gen_bool(0.2) {
                        format!("{} = {}", WORDS[rng.gen_range(31..WORDS.len())], expr(rng, depth - 1))
                    } else {
                        expr(rng, depth - 1)
                    }
                })
                .collect();
            format!("{f}({})", args.join(", "))
        }
    }
}

/// A random program in the grammar (statements in plausible order, names from a small pool so they resolve).
pub fn generate(rng: &mut ChaCha8Rng) -> String {
    let mut out = String::from("objective fuzz\n");
    for _ in 0..rng.gen_range(0..8) {
        let line = match rng.gen_range(0..9) {
            0 => format!("data {}", ["winners", "pairs", "labelled", "triples"][rng.gen_range(0..4)]),
            1 => format!("noise {}", ["shared", "independent"][rng.gen_range(0..2)]),
            2 => format!("pool every = {}, keep = {}", rng.gen_range(0..40), rng.gen_range(0..9)),
            3 => format!("param beta: {} = {} in (0, inf)", ["real", "int"][rng.gen_range(0..2)], expr(rng, 1)),
            4 => format!(
                "reference ref = {}",
                ["initial", "latest", "uniform", "ema(decay = 0.99)", "uniform(draw = sample)", "policy"]
                    [rng.gen_range(0..6)]
            ),
            5 | 6 => format!("let {} = {}", ["x", "d", "s"][rng.gen_range(0..3)], expr(rng, 4)),
            7 => format!("log {} = {}", ["a", "b"][rng.gen_range(0..2)], expr(rng, 3)),
            _ => format!("loss {}", expr(rng, 4)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    if rng.gen_bool(0.7) {
        out.push_str(&format!("loss mean({})\n", expr(rng, 4)));
    }
    out
}

/// A shipped objective with a few grammar-aware edits: delete, duplicate or swap a token run, insert a word
/// or punctuation, or flip a byte.
pub fn mutate(text: &str, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..6) {
        let at = rng.gen_range(0..=bytes.len());
        match rng.gen_range(0..5) {
            0 => {
                let end = (at + rng.gen_range(1..12)).min(bytes.len());
                bytes.drain(at..end);
            }
            1 => {
                let end = (at + rng.gen_range(1..24)).min(bytes.len());
                let dup = bytes[at..end].to_vec();
                bytes.splice(at..at, dup);
            }
            2 => {
                let w = WORDS[rng.gen_range(0..WORDS.len())];
                bytes.splice(at..at, format!(" {w} ").into_bytes());
            }
            3 => {
                let p = ["(", ")", ",", "=", "-", "*", "#", "\n", "((", "1e400", "\u{fffd}"][rng.gen_range(0..11)];
                bytes.splice(at..at, p.bytes());
            }
            _ => {
                if at < bytes.len() {
                    bytes[at] = rng.gen();
                }
            }
        }
    }
    bytes
}
