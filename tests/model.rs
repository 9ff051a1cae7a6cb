//! CPU tests of the DiT denoiser: shapes, training, gradients, clipping, EMA, checkpoints, null condition.

use std::collections::BTreeMap;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use seppoc::device::{cpu, CpuDevice};
use seppoc::model::checkpoint::{load_checkpoint_expecting, read_checkpoint_meta};
use seppoc::model::*;

const S: usize = 8;
const V: usize = 10;
const L: usize = 4;

fn tiny() -> DitConfig {
    DitConfig::tiny(S, V, L)
}

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

fn captions(b: usize) -> Vec<Vec<usize>> {
    (0..b).map(|i| vec![1 + i % (V - 1), 2, 0, 0]).collect()
}

fn eval_loss(model: &Dit<CpuDevice>, x: &[f32], t: &[usize], tok: &[Vec<usize>], eps: &[f32]) -> f32 {
    let pred = model.forward(model.images(x.to_vec()).unwrap(), t, tok).unwrap();
    per_sample_error(pred, &model.images(eps.to_vec()).unwrap()).mean().array()
}

#[test]
fn output_has_input_shape() {
    let dev = cpu();
    let model = Dit::new(&tiny(), &dev, 0).unwrap();
    let x = model.images(randn(3 * 3 * S * S, 1)).unwrap();
    let y = model.forward(x, &[0, 500, 999], &captions(3)).unwrap();
    assert_eq!(*y.shape(), (3, 3, S, S));
    assert!(y.as_vec().iter().all(|v| v.is_finite()));
}

#[test]
fn bad_inputs_are_errors() {
    let dev = cpu();
    let model = Dit::new(&tiny(), &dev, 0).unwrap();
    let x = || model.images(randn(2 * 3 * S * S, 1)).unwrap();
    assert!(matches!(model.forward(x(), &[0], &captions(2)), Err(ModelError::Shape(_))));
    assert!(matches!(model.forward(x(), &[0, 1], &[vec![V], vec![1]]), Err(ModelError::Tokens(_))));
    assert!(matches!(model.forward(x(), &[0, 1], &[vec![1; L + 1], vec![1]]), Err(ModelError::Tokens(_))));
    assert!(model.images(vec![0.0; 7]).is_err());
    let mut bad = tiny();
    bad.patch_size = 3;
    assert!(matches!(Dit::new(&bad, &dev, 0), Err(ModelError::Config(_))));
}

#[test]
fn loss_decreases_with_adamw_on_a_fixed_batch() {
    let dev = cpu();
    let mut model = Dit::new(&tiny(), &dev, 3).unwrap();
    let mut opt = AdamW::new(&model, AdamWConfig { warmup_steps: 5, ..AdamWConfig::with_lr(3e-3) });
    let b = 4;
    let (x, eps) = (randn(b * 3 * S * S, 10), randn(b * 3 * S * S, 11));
    let (t, tok) = (vec![100, 300, 600, 900], captions(b));
    let first = eval_loss(&model, &x, &t, &tok, &eps);
    for _ in 0..30 {
        let xt = model.images(x.clone()).unwrap().traced(model.alloc_grads());
        let pred = model.forward(xt, &t, &tok).unwrap();
        let loss = per_sample_error(pred, &model.images(eps.clone()).unwrap()).mean();
        let mut grads = ParamGrads::backward(&model, loss);
        grads.clip_global_norm(1.0);
        opt.update(&mut model, &grads);
    }
    let last = eval_loss(&model, &x, &t, &tok, &eps);
    assert_eq!(opt.step_count(), 30);
    assert!(last < 0.7 * first, "loss {first} -> {last}");
}

#[test]
fn train_step_mse_runs_and_reports() {
    let dev = cpu();
    let mut model = Dit::new(&tiny(), &dev, 3).unwrap();
    let mut opt = AdamW::new(&model, AdamWConfig::with_lr(1e-3));
    let sched = NoiseSchedule::default_linear();
    let batch = MseBatch { x0: randn(2 * 3 * S * S, 5).iter().map(|v| v.tanh()).collect(), tokens: captions(2) };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let stats = train_step_mse(&mut model, &mut opt, &sched, &batch, 1.0, &mut rng).unwrap();
    assert!(stats.loss.is_finite() && stats.grad_norm > 0.0);
    let bad = MseBatch { x0: vec![0.0; 5], tokens: captions(2) };
    assert!(train_step_mse(&mut model, &mut opt, &sched, &bad, 1.0, &mut rng).is_err());
}

#[test]
fn gradients_match_central_differences() {
    let dev = cpu();
    let model = Dit::new(&tiny(), &dev, 7).unwrap();
    let b = 2;
    let (x, eps) = (randn(b * 3 * S * S, 20), randn(b * 3 * S * S, 21));
    let (t, tok) = (vec![50, 700], captions(b));
    let xt = model.images(x.clone()).unwrap().traced(model.alloc_grads());
    let pred = model.forward(xt, &t, &tok).unwrap();
    let grads = ParamGrads::backward(&model, per_sample_error(pred, &model.images(eps.clone()).unwrap()).mean());
    let names =
        ["final.out.weight", "blocks.0.attn.q.weight", "t_embed.fc1.weight", "text_embed", "blocks.1.mlp.fc1.bias"];
    for name in names {
        let idx = model.specs().iter().position(|s| s.name == name).unwrap();
        let g = grads.grads[idx].as_vec();
        // The largest-magnitude entry gives a well-conditioned finite difference.
        let (j, &analytic) = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap();
        let h = 1e-2;
        let shifted = |d: f32| {
            let mut host = model.to_host();
            host[idx][j] += d;
            let m = Dit::from_host(model.config(), &dev, host).unwrap();
            eval_loss(&m, &x, &t, &tok, &eps)
        };
        let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
        let tol = 0.05 * analytic.abs() + 1e-4;
        assert!((numeric - analytic).abs() < tol, "{name}[{j}]: analytic {analytic}, numeric {numeric}");
    }
}

/// Per-sample errors are the f64 means rounded once to f32 (so devices that sum in other orders agree), and their
/// gradient is the f32 mean's: d e_i / d pred = 2 (pred − eps) / n.
#[test]
fn per_sample_errors_are_correctly_rounded_means() {
    let dev = cpu();
    let (b, c, s) = (3, 3, 16);
    let n = c * s * s;
    let pred_v: Vec<f32> = randn(b * n, 5).iter().map(|v| v * 3.0).collect();
    let eps_v = randn(b * n, 6);
    let pred = dev.tensor_from_vec(pred_v.clone(), (b, c, s, s));
    let eps = dev.tensor_from_vec(eps_v.clone(), (b, c, s, s));
    let e = per_sample_error(pred.clone().leaky_traced(), &eps);
    let values = e.retaped::<NoneTape>().as_vec();
    for i in 0..b {
        let exact: f64 =
            (0..n).map(|j| ((pred_v[i * n + j] - eps_v[i * n + j]) as f64).powi(2)).sum::<f64>() / n as f64;
        let ulp = (exact as f32).abs() * f32::EPSILON;
        assert!((values[i] as f64 - exact).abs() <= ulp as f64, "sample {i}: {} vs {exact}", values[i]);
    }
    let grads = e.sum().backward();
    let g = grads.get(&pred).as_vec();
    for j in [0, 17, n + 5, 2 * n + n - 1] {
        let want = 2.0 * (pred_v[j] - eps_v[j]) / n as f32;
        assert!((g[j] - want).abs() <= 1e-6 * want.abs().max(1e-3), "gradient {j}: {} vs {want}", g[j]);
    }
}

#[test]
fn clipping_caps_the_global_norm() {
    let dev = cpu();
    let model = Dit::new(&tiny(), &dev, 1).unwrap();
    let xt = model.images(randn(2 * 3 * S * S, 2)).unwrap().traced(model.alloc_grads());
    let pred = model.forward(xt, &[10, 20], &captions(2)).unwrap();
    let mut grads = ParamGrads::backward(&model, pred.square().mean() * 100.0);
    let before = grads.global_norm();
    assert!(before > 0.5, "norm {before}");
    let reported = grads.clip_global_norm(0.5);
    assert!((reported - before).abs() < 1e-4 * before);
    assert!((grads.global_norm() - 0.5).abs() < 1e-4, "after {}", grads.global_norm());
    assert!((grads.clip_global_norm(10.0) - 0.5).abs() < 1e-4);
}

#[test]
fn ema_interpolates_parameters() {
    let dev = cpu();
    let a = Dit::new(&tiny(), &dev, 1).unwrap();
    let b = Dit::new(&tiny(), &dev, 2).unwrap();
    let mut ema = Ema::new(&a);
    ema.update(&b, 1.0);
    assert_eq!(ema.model().to_host(), a.to_host());
    ema.update(&b, 0.0);
    assert_eq!(ema.model().to_host(), b.to_host());
}

#[test]
fn null_condition_is_all_pad_and_changes_the_output() {
    let dev = cpu();
    let model = Dit::new(&tiny(), &dev, 4).unwrap();
    let mut cap = vec![3, 4, 5, 0];
    blank_caption(&mut cap);
    assert_eq!(cap, vec![PAD; L]);
    let x = randn(3 * S * S, 3);
    let run = |c: Vec<usize>| model.forward(model.images(x.clone()).unwrap(), &[500], &[c]).unwrap().as_vec();
    let (null, cond) = (run(cap), run(vec![3, 4, 5, 0]));
    assert_eq!(null, run(vec![]));
    assert_ne!(null, cond);
    assert!(null.iter().all(|v| v.is_finite()));
}

fn meta() -> CheckpointMeta {
    let mut params = BTreeMap::new();
    params.insert("beta".to_string(), 5000.0);
    let objective = ObjectiveMeta { text: "loss = sft".into(), sha256: "abc123".into(), params };
    let schedule = ScheduleSpec::epsilon(ScheduleKind::Cosine, 1000);
    CheckpointMeta {
        seed: 42,
        step: 1234,
        kind: Some("run".into()),
        command: Some("seppoc run x.obj".into()),
        train: Some(serde_json::json!({ "batch": 16 })),
        objective: Some(objective),
        ..CheckpointMeta::new("image", "{\"shapes\":3}".into(), schedule)
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("seppoc-model-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn checkpoint_round_trip_gives_identical_outputs() {
    let dev = cpu();
    let model = Dit::new(&tiny(), &dev, 9).unwrap();
    let path = tmp("round.safetensors");
    save_checkpoint(&path, &model, &meta()).unwrap();
    assert!(!path.with_extension("safetensors.tmp").exists());
    let (loaded, m) = load_checkpoint(&path, &dev).unwrap();
    assert_eq!(m, meta());
    assert_eq!(loaded.config(), model.config());
    let x = randn(2 * 3 * S * S, 8);
    let out =
        |md: &Dit<CpuDevice>| md.forward(md.images(x.clone()).unwrap(), &[3, 999], &captions(2)).unwrap().as_vec();
    assert_eq!(out(&model), out(&loaded));
    let (cfg, _) = read_checkpoint_meta(&path).unwrap();
    assert_eq!(cfg, tiny());
    let mut other = tiny();
    other.width = 16;
    let err = load_checkpoint_expecting(&path, &dev, &other).unwrap_err();
    assert!(matches!(err, CheckpointError::ConfigMismatch { .. }), "{err}");
}

#[test]
fn plain_tensors_are_saved_byte_for_byte_like_a_model_holding_them() {
    // The resume state stores AdamW's moments with `save_tensors`; earlier versions wrapped them in a whole DiT
    // and used `save_checkpoint`, so both must write the same bytes (old states resume, new ones stay readable).
    let dev = cpu();
    let values: Vec<Vec<f32>> = Dit::new(&tiny(), &dev, 4).unwrap().to_host();
    let specs = param_specs(&tiny()).unwrap();
    assert_eq!(specs, Dit::new(&tiny(), &dev, 0).unwrap().specs());
    let (as_model, plain) = (tmp("moments-model.safetensors"), tmp("moments-plain.safetensors"));
    save_checkpoint(&as_model, &Dit::from_host(&tiny(), &dev, values.clone()).unwrap(), &meta()).unwrap();
    save_tensors(&plain, &tiny(), &values, &meta()).unwrap();
    assert_eq!(std::fs::read(&as_model).unwrap(), std::fs::read(&plain).unwrap());
    let (cfg, loaded, m) = load_tensors(&plain).unwrap();
    assert_eq!((cfg, loaded, m), (tiny(), values.clone(), meta()));
    let short = save_tensors(&plain, &tiny(), &values[1..], &meta()).unwrap_err();
    assert!(matches!(short, CheckpointError::Format { .. }), "{short}");
    let err = Dit::from_host(&tiny(), &dev, values[1..].to_vec()).unwrap_err();
    assert!(matches!(err, ModelError::ParamCount { .. }), "{err}");
    let mut long = values;
    long[0].push(0.0);
    let err = Dit::from_host(&tiny(), &dev, long).unwrap_err();
    assert!(matches!(err, ModelError::ParamLen { .. }), "{err}");
}

#[test]
fn broken_checkpoints_are_typed_errors() {
    let dev = cpu();
    let model = Dit::new(&tiny(), &dev, 9).unwrap();
    let path = tmp("good.safetensors");
    save_checkpoint(&path, &model, &meta()).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let missing = load_checkpoint(&tmp("nope.safetensors"), &dev).unwrap_err();
    assert!(matches!(missing, CheckpointError::Io { .. }), "{missing}");
    assert!(missing.to_string().contains("nope.safetensors"));

    let mut garbage = bytes.clone();
    garbage[8..40].fill(b'#');
    for (name, data) in
        [("trunc", bytes[..bytes.len() / 2].to_vec()), ("short", bytes[..5].to_vec()), ("garbage", garbage)]
    {
        let p = tmp(&format!("{name}.safetensors"));
        std::fs::write(&p, data).unwrap();
        let err = load_checkpoint(&p, &dev).unwrap_err();
        assert!(matches!(err, CheckpointError::Format { .. }), "{name}: {err}");
    }

    // Re-write the file with one tensor reshaped, then with one tensor missing.
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = ::safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut views = Vec::new();
    for (name, view) in st.tensors() {
        let shape =
            if name == "final.out.weight" { vec![view.shape().iter().product()] } else { view.shape().to_vec() };
        views.push((name, ::safetensors::tensor::TensorView::new(view.dtype(), shape, view.data()).unwrap()));
    }
    let write = |p: &std::path::Path, v: Vec<(String, ::safetensors::tensor::TensorView)>| {
        std::fs::write(p, ::safetensors::serialize(v, md.metadata()).unwrap()).unwrap();
    };
    let p = tmp("shape.safetensors");
    write(&p, views.clone());
    let err = load_checkpoint(&p, &dev).unwrap_err();
    assert!(matches!(&err, CheckpointError::WrongShape { name, .. } if name == "final.out.weight"), "{err}");
    assert!(err.to_string().contains("final.out.weight"));

    let p = tmp("missing.safetensors");
    write(&p, views.into_iter().filter(|(n, _)| n != "pos_embed").collect());
    let err = load_checkpoint(&p, &dev).unwrap_err();
    assert!(matches!(&err, CheckpointError::MissingTensor { name, .. } if name == "pos_embed"), "{err}");
}
