//! The DiT on clips (`frames > 1`): shapes, attention across frames, training, gradients into the frame
//! embedding, checkpoints, sampling; and image configs that stay exactly as they were.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use seppoc::device::{cpu, CpuDevice};
use seppoc::model::*;
use seppoc::sampler::{sample, SamplerConfig};

const S: usize = 8;
const F: usize = 3;

fn video() -> DitConfig {
    DitConfig::tiny(S, 10, 4).with_frames(F)
}

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

fn captions(b: usize) -> Vec<Vec<usize>> {
    (0..b).map(|i| vec![1 + i % 9, 2, 0, 0]).collect()
}

#[test]
fn image_configs_serialise_without_frames_and_old_json_loads() {
    let image = DitConfig::tiny(S, 10, 4);
    let json = serde_json::to_string(&image).unwrap();
    assert!(!json.contains("frames"), "{json}");
    assert_eq!(serde_json::from_str::<DitConfig>(&json).unwrap(), image);
    let clip = serde_json::to_string(&video()).unwrap();
    assert!(clip.contains("\"frames\":3"), "{clip}");
    assert_eq!(serde_json::from_str::<DitConfig>(&clip).unwrap(), video());
    assert!(Dit::new(&DitConfig::tiny(S, 10, 4), &cpu(), 0).unwrap().specs().iter().all(|s| s.name != "frame_embed"));
    let zero = DitConfig::tiny(S, 10, 4).with_frames(0);
    assert!(matches!(Dit::new(&zero, &cpu(), 0), Err(ModelError::Config(_))));
}

#[test]
fn clip_output_has_input_shape_and_frames_see_each_other() {
    let dev = cpu();
    let model = Dit::new(&video(), &dev, 0).unwrap();
    assert!(model.specs().iter().any(|s| s.name == "frame_embed" && s.shape == vec![F, 32]));
    let per = 3 * F * S * S;
    let x = randn(2 * per, 1);
    let run = |x: Vec<f32>| model.forward(model.images(x).unwrap(), &[10, 600], &captions(2)).unwrap();
    let y = run(x.clone());
    assert_eq!(*y.shape(), (2, 3 * F, S, S));
    // Changing frame 0 of clip 0 changes the prediction for its last frame (attention across time) but not
    // for the other clip.
    let mut x2 = x.clone();
    x2[..3 * S * S].iter_mut().for_each(|v| *v = -*v);
    let (a, b) = (y.as_vec(), run(x2).as_vec());
    let last = (F - 1) * 3 * S * S..per;
    assert!(a[last.clone()].iter().zip(&b[last]).any(|(p, q)| (p - q).abs() > 1e-6));
    assert_eq!(a[per..], b[per..]);
    // An image-sized buffer is rejected with a shape error, not a panic.
    assert!(matches!(model.images(randn(3 * S * S * 2 + 1, 2)), Err(ModelError::Shape(_))));
}

#[test]
fn training_reaches_the_frame_embedding_and_lowers_the_loss() {
    let dev = cpu();
    let mut model = Dit::new(&video(), &dev, 3).unwrap();
    let mut opt = AdamW::new(&model, AdamWConfig { warmup_steps: 5, ..AdamWConfig::with_lr(3e-3) });
    let b = 4;
    let per = model.config().image_len();
    let (x, eps) = (randn(b * per, 10), randn(b * per, 11));
    let (t, tok) = (vec![100, 300, 600, 900], captions(b));
    let loss_of = |m: &Dit<CpuDevice>| {
        let pred = m.forward(m.images(x.clone()).unwrap(), &t, &tok).unwrap();
        per_sample_error(pred, &m.images(eps.clone()).unwrap()).mean().array()
    };
    let first = loss_of(&model);
    let frame_idx = model.specs().iter().position(|s| s.name == "frame_embed").unwrap();
    for step in 0..20 {
        let pred = model.forward(model.images(x.clone()).unwrap().traced(model.alloc_grads()), &t, &tok).unwrap();
        let loss = per_sample_error(pred, &model.images(eps.clone()).unwrap()).mean();
        let mut grads = ParamGrads::backward(&model, loss);
        if step == 0 {
            assert!(grads.grads[frame_idx].as_vec().iter().any(|g| *g != 0.0));
        }
        grads.clip_global_norm(1.0);
        opt.update(&mut model, &grads);
    }
    let last = loss_of(&model);
    assert!(last < 0.8 * first, "loss {first} -> {last}");
    let batch = MseBatch { x0: randn(2 * per, 5).iter().map(|v| v.tanh()).collect(), tokens: captions(2) };
    let stats = train_step_mse(&mut model, &mut opt, &NoiseSchedule::default_linear(), &batch, 1.0, &mut rng(0));
    assert!(stats.unwrap().loss.is_finite());
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn clip_checkpoints_round_trip_and_sampling_gives_clips() {
    let dev = cpu();
    let model = Dit::new(&video(), &dev, 9).unwrap();
    let dir = std::env::temp_dir().join(format!("seppoc-video-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.safetensors");
    let meta = CheckpointMeta {
        seed: 1,
        step: 2,
        ..CheckpointMeta::new("video", "{}".into(), ScheduleSpec::default_linear())
    };
    save_checkpoint(&path, &model, &meta).unwrap();
    let (loaded, _) = load_checkpoint(&path, &dev).unwrap();
    assert_eq!(loaded.config(), &video());
    assert_eq!(loaded.to_host(), model.to_host());
    let clips =
        sample(&loaded, &NoiseSchedule::default_linear(), &SamplerConfig::ddim(3, 2.0), &captions(2), 4).unwrap();
    assert_eq!(clips.len(), 2);
    assert!(clips.iter().all(|c| c.len() == 3 * F * S * S && c.iter().all(|v| (-1.0..=1.0).contains(v))));
    let _ = std::fs::remove_dir_all(&dir);
}
