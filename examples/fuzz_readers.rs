//! The file-reader fuzz campaign: `cargo run --release --example fuzz_readers -- [N] [SEED]` runs N mutated
//! inputs (default 100,000, seed 0) split evenly over the Parquet preference reader, the checkpoint reader and
//! the imagefolder `metadata.jsonl` loader. Prints one JSON line per reader (inputs, panics, accepted, slowest
//! input) and exits 1 if any input panicked; crashing inputs and each reader's slowest input are written to
//! `fuzz-crashes/`.

#[path = "../tests/support/fuzz_readers.rs"]
mod fuzz_readers;

use fuzz_readers::{campaign, Reader, Seeds};
use std::sync::Mutex;

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    // Panics are counted, not printed per input; the last location is kept for the report.
    std::panic::set_hook(Box::new(|info| {
        if let (Ok(mut last), Some(loc)) = (LAST_PANIC.lock(), info.location()) {
            *last = loc.to_string();
        }
    }));
    let seeds = Seeds::new(&std::env::temp_dir().join(format!("seppoc-fuzz-readers-{}", std::process::id())));
    let all = std::time::Instant::now();
    let mut panics = 0;
    for (r, reader) in Reader::ALL.into_iter().enumerate() {
        let count = n / 3 + u64::from((r as u64) < n % 3);
        let started = std::time::Instant::now();
        let stats = campaign(&seeds, reader, count, seed);
        let secs = started.elapsed().as_secs_f64();
        let name = reader.name();
        let _ = std::fs::create_dir_all("fuzz-crashes");
        let _ = std::fs::write(format!("fuzz-crashes/slowest-{name}"), &stats.slowest);
        for (k, crash) in stats.crashes.iter().enumerate() {
            let _ = std::fs::write(format!("fuzz-crashes/crash-{name}-{k}-{}", crash.file), &crash.bytes);
            eprintln!("{name} crash {k} ({}): {}", crash.file, crash.message);
        }
        let last = LAST_PANIC.lock().map(|l| l.clone()).unwrap_or_default();
        let report = serde_json::json!({
            "reader": name, "seed": seed, "inputs": stats.inputs, "panics": stats.panics,
            "accepted": stats.accepted, "max_micros": stats.max_micros, "seconds": secs,
            "last_panic_at": if stats.panics > 0 { last } else { String::new() },
        });
        println!("{report}");
        panics += stats.panics;
    }
    println!("{{\"inputs\": {n}, \"panics\": {panics}, \"seconds\": {}}}", all.elapsed().as_secs_f64());
    if panics > 0 {
        std::process::exit(1);
    }
}
