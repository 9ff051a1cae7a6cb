//! Memory stays flat over many training steps. dfdx's CPU allocation cache keeps every buffer a dropped tensor
//! owned; tensors built from fresh `Vec`s (dfdx's `tensor_from_vec`) therefore grew the cache by one buffer per
//! upload per step (about 0.5 MB per pretraining step at batch 64), until `device::upload` copied uploads into
//! cache-allocated tensors. Linux only (reads `VmRSS` from `/proc/self/status`); alone in its own test binary so
//! no other test's allocations show up in the process's resident size.

#![cfg(target_os = "linux")]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::data::{Vocab, MAX_TOKENS};
use seppoc::device::cpu;
use seppoc::model::{train_step_mse, AdamW, AdamWConfig, Dit, DitConfig, MseBatch, NoiseSchedule};

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

#[test]
fn training_steps_do_not_grow_the_allocation_cache() {
    let vocab = Vocab::new();
    let mut model = Dit::new(&DitConfig::tiny(16, vocab.len(), MAX_TOKENS), &cpu(), 1).expect("tiny model");
    let mut opt = AdamW::new(&model, AdamWConfig::with_lr(1e-3));
    let schedule = NoiseSchedule::default_linear();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (b, per) = (32, model.config().image_len());
    let mut step = |rng: &mut ChaCha8Rng| {
        let x0: Vec<f32> = (0..b * per).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let tokens = (0..b).map(|i| vocab.encode(if i % 2 == 0 { "a red circle" } else { "a blue square" })).collect();
        train_step_mse(&mut model, &mut opt, &schedule, &MseBatch { x0, tokens }, 1.0, rng).expect("step");
    };
    // Warm up until the cache holds the working set of one step.
    for _ in 0..50 {
        step(&mut rng);
    }
    let before = resident_kib();
    let steps = 300;
    for _ in 0..steps {
        step(&mut rng);
    }
    let grown = resident_kib().saturating_sub(before);
    // The leak kept two image batches (x_t and ε: 2 · 32 · 768 f32 = 192 KiB) plus the conditioning per step:
    // about 70 MiB over 300 steps. Flat memory leaves allocator noise of a few MiB.
    assert!(grown < 16 * 1024, "resident memory grew by {grown} KiB over {steps} training steps");
}
