//! A fixed-seed slice of the front-end fuzz campaign (`examples/fuzz.rs` runs the full million).

#[path = "support/fuzz.rs"]
mod fuzz;

use std::time::Duration;

#[test]
fn fuzz_slice_has_no_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/objectives");
    let corpus: Vec<String> = std::fs::read_dir(dir)
        .expect("objectives/")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    let stats = fuzz::campaign(&corpus, 3000, 42, Duration::from_secs(1));
    assert_eq!(stats.inputs, 3000);
    assert_eq!(
        stats.panics,
        0,
        "crashing inputs: {:?}",
        stats.crashes.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>()
    );
    assert_eq!(stats.slow, 0, "an input took more than 1 s (max {} us)", stats.max_micros);
    assert!(stats.accepted > 0, "generation never produced a valid program");
}
