//! Parametrisations on CPU: ε-, v- and rectified-flow models noise, train and sample as their checkpoint says,
//! the samplers agree where the maths says they must, and the loss invariants hold on flow leaves.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::compile::conformance;
use seppoc::data::{PreferenceSet, SyntheticWorld, Vocab, World, WorldConfig, MAX_TOKENS};
use seppoc::device::{cpu, CpuDevice};
use seppoc::frontend::frontend_with;
use seppoc::ir::{lower, Bound, LeafValues, ModelRef};
use seppoc::model::{
    per_sample_error, read_checkpoint_meta, save_checkpoint, train_step_mse, AdamW, AdamWConfig, CheckpointMeta, Dit,
    DitConfig, MseBatch, NoiseSchedule, Parametrisation, ScheduleKind, ScheduleSpec, TimeSampling,
};
use seppoc::sampler::{denoise, guided_prediction, sample, SamplerConfig, SamplerKind};
use seppoc::source::SourceFile;
use seppoc::trainer::{TrainConfig, Trainer, TrainerParts};

const S: usize = 8;

fn schedule(param: Parametrisation) -> NoiseSchedule {
    ScheduleSpec { param, time: TimeSampling::Uniform, ..ScheduleSpec::epsilon(ScheduleKind::Cosine, 1000) }.build()
}

fn tiny(seed: u64) -> Dit<CpuDevice> {
    Dit::new(&DitConfig::tiny(S, 10, 4), &cpu(), seed).expect("tiny model")
}

fn caps() -> Vec<Vec<usize>> {
    vec![vec![1, 2, 0, 0], vec![3, 0, 0, 0]]
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
}

/// A v-prediction network read as an ε-prediction model through `ε̂ = s_t·x_t + a_t·v̂` (Salimans & Ho 2022,
/// arXiv 2202.00512, §4) gives the same DDIM and DDPM samples, with and without guidance (guidance is affine in
/// the output, so it commutes with the reading): both samplers see the same `(x̂_0, ε̂)` at every step.
#[test]
fn v_model_and_its_epsilon_reading_give_the_same_samples() {
    let m = tiny(5);
    let (v, eps) = (schedule(Parametrisation::V), schedule(Parametrisation::Epsilon));
    let per = m.config().image_len();
    for cfg in [
        SamplerConfig::ddim(6, 3.0),
        SamplerConfig::ddim(5, 1.0),
        SamplerConfig { kind: SamplerKind::Ddim, steps: 6, cfg_scale: 2.0, eta: 1.0 },
        SamplerConfig { kind: SamplerKind::Ddpm, steps: 6, cfg_scale: 2.0, eta: 0.0 },
    ] {
        let rng = || ChaCha8Rng::seed_from_u64(17);
        let as_v = denoise(&v, &cfg, 2, per, &mut rng(), |x, t| guided_prediction(&m, x, t, &caps(), cfg.cfg_scale))
            .expect("v samples");
        let as_eps = denoise(&eps, &cfg, 2, per, &mut rng(), |x, t| {
            let out = guided_prediction(&m, x, t, &caps(), cfg.cfg_scale)?;
            let (a, s) = v.coefficients(t);
            Ok(x.iter().zip(&out).map(|(&xi, &o)| (s * xi as f64 + a * o as f64) as f32).collect())
        })
        .expect("ε samples");
        // Up to f32 rounding of the network output, which `x̂_0 = (x − s·ε̂)/a` amplifies where `a` is near 0.
        assert!(max_diff(&as_v, &as_eps) < 1e-3, "{cfg:?}: {}", max_diff(&as_v, &as_eps));
        // The same weights read as ε directly are a different model: the samples differ.
        let direct =
            denoise(&eps, &cfg, 2, per, &mut rng(), |x, t| guided_prediction(&m, x, t, &caps(), cfg.cfg_scale))
                .expect("ε samples");
        assert!(max_diff(&as_v, &direct) > 1e-2, "{cfg:?}");
    }
}

/// For data that is one point `c`, the exact rectified-flow velocity is `(x_t − c)/t` and the flow ODE's paths
/// are straight lines (Liu et al. 2022, arXiv 2209.03003): Euler and Heun land on `c` in any number of steps.
/// DDIM with the exact ε, `(x_t − a_t·c)/s_t`, lands there too.
#[test]
fn exact_predictions_reach_the_data_point_with_every_sampler() {
    let c: Vec<f32> = (0..6).map(|i| -0.7 + 0.25 * i as f32).collect();
    let per = c.len();
    let target = vec![c.clone(); 2];
    let flow = schedule(Parametrisation::Flow);
    for kind in [SamplerKind::Euler, SamplerKind::Heun] {
        for steps in [1, 3, 20] {
            let cfg = SamplerConfig { kind, steps, cfg_scale: 1.0, eta: 0.0 };
            let out = denoise(&flow, &cfg, 2, per, &mut ChaCha8Rng::seed_from_u64(1), |x, t| {
                let time = flow.flow_time(t) as f32;
                Ok(x.iter().enumerate().map(|(i, &xi)| (xi - c[i % per]) / time).collect())
            })
            .expect("flow samples");
            assert!(max_diff(&out, &target) < 1e-5, "{kind:?} {steps}: {out:?}");
        }
    }
    let eps = schedule(Parametrisation::Epsilon);
    let out = denoise(&eps, &SamplerConfig::ddim(4, 1.0), 2, per, &mut ChaCha8Rng::seed_from_u64(1), |x, t| {
        let (a, s) = eps.coefficients(t);
        Ok(x.iter().enumerate().map(|(i, &xi)| ((xi as f64 - a * c[i % per] as f64) / s) as f32).collect())
    })
    .expect("ε samples");
    assert!(max_diff(&out, &target) < 1e-4, "{out:?}");
}

#[test]
fn each_parametrisation_takes_its_own_samplers() {
    let m = tiny(5);
    let flow = schedule(Parametrisation::Flow);
    let ddpm = SamplerConfig { kind: SamplerKind::Ddpm, steps: 3, cfg_scale: 2.0, eta: 0.0 };
    let err = sample(&m, &flow, &ddpm, &caps(), 0).unwrap_err().to_string();
    assert!(err.contains("DDPM") && err.contains("rectified flow") && err.contains("euler"), "{err}");
    let noisy_ddim = SamplerConfig { eta: 0.5, ..SamplerConfig::ddim(3, 2.0) };
    assert!(sample(&m, &flow, &noisy_ddim, &caps(), 0).unwrap_err().to_string().contains("eta 0.5"));
    for param in [Parametrisation::Epsilon, Parametrisation::V] {
        let euler = SamplerConfig { kind: SamplerKind::Euler, ..SamplerConfig::ddim(3, 2.0) };
        let err = sample(&m, &schedule(param), &euler, &caps(), 0).unwrap_err().to_string();
        assert!(err.contains("Euler") && err.contains("rectified-flow model"), "{err}");
    }
    // Deterministic DDIM on a flow is its Euler step: the same samples, and the description says Euler.
    let ddim = SamplerConfig::ddim(4, 2.0);
    let euler = SamplerConfig { kind: SamplerKind::Euler, ..ddim };
    assert_eq!(sample(&m, &flow, &ddim, &caps(), 3).unwrap(), sample(&m, &flow, &euler, &caps(), 3).unwrap());
    assert_eq!(ddim.for_param(Parametrisation::Flow).unwrap().describe(), "Euler 4 steps, cfg 2");
    assert_eq!(ddim.for_param(Parametrisation::V).unwrap(), ddim);
}

/// The forward process and target of each parametrisation, at one timestep.
#[test]
fn noising_and_targets_follow_the_parametrisation() {
    let (x0, eps) = (vec![0.5f32, -0.25], vec![1.0f32, 2.0]);
    let flow = schedule(Parametrisation::Flow);
    // Index 249 of 1000 is t = 0.25 on the flow's grid.
    assert_eq!(flow.q_sample(&x0, 249, &eps), vec![0.75 * 0.5 + 0.25, 0.75 * -0.25 + 0.5]);
    assert_eq!(flow.target(&x0, 249, &eps), vec![0.5, 2.25]);
    assert_eq!(flow.coefficients(999), (0.0, 1.0));
    // What `timestep`, `alpha`, `sigma` and `snr` read in an objective: the flow's own path.
    let v = flow.time_values(249);
    assert_eq!((v.timestep, v.alpha, v.sigma), (0.25, 0.75, 0.25));
    assert!((v.snr - 9.0).abs() < 1e-12, "{}", v.snr);
    let (v, e) = (schedule(Parametrisation::V), schedule(Parametrisation::Epsilon));
    assert_eq!(v.q_sample(&x0, 400, &eps), e.q_sample(&x0, 400, &eps));
    assert_eq!(e.target(&x0, 400, &eps), eps);
    let (a, s) = v.coefficients(400);
    let want: Vec<f32> = x0.iter().zip(&eps).map(|(&x, &n)| a as f32 * n - s as f32 * x).collect();
    assert_eq!(v.target(&x0, 400, &eps), want);
}

/// A tiny flow model learns (its velocity error falls on a fixed batch) and then samples in range, seeded.
#[test]
fn a_tiny_flow_model_trains_and_samples() {
    let flow = ScheduleSpec {
        param: Parametrisation::Flow,
        time: TimeSampling::LogitNormal,
        ..ScheduleSpec::epsilon(ScheduleKind::Cosine, 1000)
    }
    .build();
    let mut m = tiny(2);
    let mut opt = AdamW::new(&m, AdamWConfig { warmup_steps: 0, ..AdamWConfig::with_lr(3e-3) });
    let per = m.config().image_len();
    let x0: Vec<f32> = (0..4 * per).map(|i| if (i / 7) % 2 == 0 { 0.8 } else { -0.6 }).collect();
    let batch = MseBatch { x0, tokens: vec![vec![1, 2, 0, 0], vec![3, 0, 0, 0], vec![4, 5, 0, 0], vec![6, 0, 0, 0]] };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let losses: Vec<f32> =
        (0..60).map(|_| train_step_mse(&mut m, &mut opt, &flow, &batch, 1.0, &mut rng).expect("step").loss).collect();
    let (head, tail) = (losses[..10].iter().sum::<f32>() / 10.0, losses[50..].iter().sum::<f32>() / 10.0);
    assert!(tail < 0.7 * head, "velocity MSE {head} -> {tail}");
    for kind in [SamplerKind::Euler, SamplerKind::Heun] {
        let cfg = SamplerConfig { kind, steps: 4, cfg_scale: 2.0, eta: 0.0 };
        let a = sample(&m, &flow, &cfg, &caps(), 9).expect("samples");
        assert_eq!(a, sample(&m, &flow, &cfg, &caps(), 9).expect("samples"), "{kind:?}");
        assert!(a.iter().flatten().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)), "{kind:?}");
    }
}

fn objective(name: &str) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let sets = vec![("beta".to_string(), "2000".to_string())];
    let sets = if name == "sft" { Vec::new() } else { sets };
    let (checked, params) = frontend_with(&SourceFile::new(path, text), &sets).expect("checks");
    lower(&checked).bind(&params).expect("binds")
}

fn flow_trainer(name: &str, initial: Dit<CpuDevice>) -> Trainer<CpuDevice> {
    let world = World::new(WorldConfig::default_16()).expect("default world");
    let data: PreferenceSet = world.preference_set(32, &mut ChaCha8Rng::seed_from_u64(7));
    let schedule = ScheduleSpec {
        param: Parametrisation::Flow,
        time: TimeSampling::LogitNormal,
        ..ScheduleSpec::epsilon(ScheduleKind::Cosine, 1000)
    }
    .build();
    let parts = TrainerParts { objective: objective(name), initial, schedule, data, vocab: Vocab::new() };
    let cfg = TrainConfig {
        batch: 4,
        lr: 1e-3,
        warmup: 0,
        max_grad_norm: 1.0,
        ema_decay: None,
        seed: 3,
        caption_dropout: 0.0,
    };
    Trainer::new(parts, cfg).expect("trainer starts")
}

fn tiny16() -> Dit<CpuDevice> {
    Dit::new(&DitConfig::tiny(16, Vocab::new().len(), MAX_TOKENS), &cpu(), 3).expect("tiny model")
}

/// Invariant 1 (ln 2 at θ = ref) and 13 (no flips at the first update under `tie = 1`) on flow leaves.
#[test]
fn loss_invariants_hold_on_flow_leaves() {
    for name in ["seppo", "dpo", "spin", "seppo_indicator", "sft"] {
        let mut tr = flow_trainer(name, tiny16());
        let first = tr.step().expect("first step");
        if name == "sft" {
            assert!(first.loss > 0.0 && first.loss.is_finite(), "sft: {}", first.loss);
        } else {
            assert!((first.loss - std::f64::consts::LN_2).abs() < 1e-6, "{name}: first loss {}", first.loss);
        }
        if name == "seppo" {
            assert_eq!(first.logs.iter().find(|(n, _)| n == "flip_rate").expect("logged").1, 0.0);
        }
        for _ in 0..2 {
            let r = tr.step().expect("later steps");
            assert!(r.loss.is_finite() && r.grad_norm.is_finite(), "{name}");
        }
    }
}

/// Recomputes every leaf of a recorded flow step from its `x_t`, `t` and target with the models it names, and
/// checks the trainer's loss and the gate's flip rate against the f64 oracle on those leaves (invariant 14;
/// gate semantics: `s = sign(e_ref(x_w) − e_θ(x_w))`).
#[test]
fn a_flow_step_matches_the_oracle_on_its_recomputed_leaves() {
    let initial = tiny16();
    let mut tr = flow_trainer("seppo_initial", initial.clone());
    for _ in 0..3 {
        tr.step().expect("warm-up steps");
    }
    let policy = tr.policy.clone();
    let (report, record) = tr.step_recorded().expect("recorded step");
    let obj = tr.obj.clone();
    let leaf = |model: &Dit<CpuDevice>, kind: &str| -> Vec<f64> {
        let (x, t, target) = &record.kinds.iter().find(|(k, _)| k == kind).expect("recorded kind").1;
        let pred = model.forward(model.images(x.clone()).unwrap(), t, &record.tokens).unwrap();
        per_sample_error(pred, &model.images(target.clone()).unwrap()).as_vec().iter().map(|&v| v as f64).collect()
    };
    let inputs: Vec<Vec<f64>> = obj
        .inputs
        .iter()
        .map(|input| {
            let kind = seppoc::ir::print::image_name(input.images);
            match &input.model {
                ModelRef::Policy => leaf(&policy, &kind),
                ModelRef::Reference(_) => leaf(&initial, &kind),
            }
        })
        .collect();
    let (oracle, dfdx) = conformance::both(&obj, &LeafValues::leaves(inputs.clone()));
    assert!(
        (oracle.loss - report.loss).abs() < 1e-4 * report.loss.abs().max(1e-3),
        "{} vs {}",
        oracle.loss,
        report.loss
    );
    assert!((dfdx.loss - report.loss).abs() < 1e-4 * report.loss.abs().max(1e-3), "{} vs {}", dfdx.loss, report.loss);
    let name = |n: &str| obj.inputs.iter().position(|i| i.name() == n).expect("leaf");
    let (e_theta, e_ref) = (&inputs[name("e_policy_winner")], &inputs[name("e_ref_winner")]);
    let flips = e_theta.iter().zip(e_ref).filter(|(p, r)| (**r as f32) < (**p as f32)).count() as f64;
    let logged = report.logs.iter().find(|(n, _)| n == "flip_rate").expect("flip_rate logged").1;
    assert_eq!(logged, flips / e_theta.len() as f64);
}

/// Checkpoints written before parametrisations were recorded (the shipped ε base) read as ε with uniform
/// timesteps; a flow checkpoint records and returns its own; a parametrisation no build knows is an error
/// naming the file and the key.
#[test]
fn checkpoints_record_their_parametrisation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_, old) = read_checkpoint_meta(&root.join("assets/base_v1/model.safetensors")).expect("shipped checkpoint");
    assert_eq!((old.schedule.param, old.schedule.time), (Parametrisation::Epsilon, TimeSampling::Uniform));
    let dir = std::env::temp_dir().join(format!("seppoc-flow-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = ScheduleSpec {
        param: Parametrisation::Flow,
        time: TimeSampling::LogitNormal,
        ..ScheduleSpec::epsilon(ScheduleKind::Cosine, 1000)
    };
    let path = dir.join("flow.safetensors");
    save_checkpoint(&path, &tiny(1), &CheckpointMeta::new("image", "{}".into(), spec)).expect("saves");
    assert_eq!(read_checkpoint_meta(&path).expect("reads").1.schedule, spec);
    // Same length, so the header stays well formed: only the recorded name changes.
    let (from, to) = (br#"\"param\":\"flow\""#, br#"\"param\":\"cold\""#);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the header records the parametrisation");
    bytes[at..at + from.len()].copy_from_slice(to);
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let err = read_checkpoint_meta(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.safetensors") && err.contains("schedule") && err.contains("cold"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
