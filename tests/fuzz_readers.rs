//! A fixed-seed slice of the file-reader fuzz campaign (`examples/fuzz_readers.rs` runs the full 100,000+):
//! mutated Parquet preference files, checkpoints and imagefolder metadata never make a reader panic.

#[path = "support/fuzz_readers.rs"]
mod fuzz_readers;

use fuzz_readers::{campaign, Reader, Seeds};

#[test]
fn reader_fuzz_slice_has_no_panics() {
    let dir = std::env::temp_dir().join(format!("seppoc-fuzz-readers-{}", std::process::id()));
    let seeds = Seeds::new(&dir);
    for (reader, n) in Reader::ALL.into_iter().zip([1500, 1000, 1500]) {
        let stats = campaign(&seeds, reader, n, 42);
        eprintln!("{}: {} inputs, {} accepted, slowest {} us", reader.name(), n, stats.accepted, stats.max_micros);
        assert_eq!(stats.inputs, n);
        let crashes: Vec<String> = stats.crashes.iter().map(|c| format!("{} ({} bytes): {}", c.file, c.bytes.len(), c.message)).collect();
        assert_eq!(stats.panics, 0, "{}: crashing inputs: {crashes:?}", reader.name());
        assert!(stats.accepted > 0, "{}: mutation never left a readable file", reader.name());
    }
}
