//! The front-end fuzz campaign: `cargo run --release --example fuzz -- [N] [SEED]` (default 1,000,000 inputs,
//! seed 0). Prints the statistics as JSON and exits 1 if any input panicked; crashing inputs are written to
//! `fuzz-crashes/` to become `tests/ui` cases.

#[path = "../tests/support/fuzz.rs"]
mod fuzz;

use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let corpus: Vec<String> = std::fs::read_dir("objectives")
        .map(|d| d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
        .unwrap_or_default();
    // Panics are counted, not printed per input.
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    let stats = fuzz::campaign(&corpus, n, seed, Duration::from_millis(100));
    let secs = started.elapsed().as_secs_f64();
    for (k, crash) in stats.crashes.iter().enumerate() {
        let _ = std::fs::create_dir_all("fuzz-crashes");
        let _ = std::fs::write(format!("fuzz-crashes/crash-{k}.obj"), crash);
    }
    let mut report = serde_json::to_value(&stats).unwrap_or_default();
    if let Some(obj) = report.as_object_mut() {
        obj.remove("crashes");
        obj.insert("seed".into(), seed.into());
        obj.insert("corpus_files".into(), corpus.len().into());
        obj.insert("seconds".into(), serde_json::json!(secs));
    }
    println!("{report}");
    if stats.panics > 0 {
        std::process::exit(1);
    }
}
