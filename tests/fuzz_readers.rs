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
        let crashes: Vec<String> =
            stats.crashes.iter().map(|c| format!("{} ({} bytes): {}", c.file, c.bytes.len(), c.message)).collect();
        assert_eq!(stats.panics, 0, "{}: crashing inputs: {crashes:?}", reader.name());
        assert!(stats.accepted > 0, "{}: mutation never left a readable file", reader.name());
    }
}

/// Every input a campaign found crashing, kept in `tests/fuzz_crashes/`: each is now an error, not a panic.
#[test]
fn kept_crashers_are_errors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_crashes");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fuzz_crashes exists") {
        let path = entry.expect("readable").path();
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => {
                let err = seppoc::data::parquet::read(&path, 8).expect_err(&name).to_string();
                assert!(err.contains(&name), "{name}: the error names the file: {err}");
            }
            Some("safetensors") => {
                assert!(seppoc::model::checkpoint::read_checkpoint_meta(&path).is_err(), "{name}");
            }
            _ => continue,
        }
        seen += 1;
    }
    assert!(seen > 0, "no kept crashers found");
}
