//! CPU tests of noise schedules, forward noising and the DDPM/DDIM samplers with classifier-free guidance.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use seppoc::device::{cpu, CpuDevice};
use seppoc::model::{Dit, DitConfig, NoiseSchedule, ScheduleKind, PAD};
use seppoc::sampler::{guided_prediction, sample, timesteps, SamplerConfig, SamplerKind};

const S: usize = 8;

fn model() -> Dit<CpuDevice> {
    Dit::new(&DitConfig::tiny(S, 10, 4), &cpu(), 5).unwrap()
}

fn caps() -> Vec<Vec<usize>> {
    vec![vec![1, 2, 0, 0], vec![3, 0, 0, 0]]
}

#[test]
fn alphas_cumprod_decrease_strictly_within_unit_interval() {
    for kind in [ScheduleKind::Linear, ScheduleKind::ScaledLinear, ScheduleKind::Cosine] {
        let s = NoiseSchedule::new(kind, 1000);
        assert_eq!(s.n_steps(), 1000);
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]), "{kind:?}");
        assert!(s.alphas_cumprod.iter().all(|&a| a > 0.0 && a < 1.0), "{kind:?}");
        assert!(s.betas.iter().all(|&b| b > 0.0 && b < 1.0), "{kind:?}");
    }
    let lin = NoiseSchedule::default_linear();
    assert!((lin.betas[0] - 1e-4).abs() < 1e-12 && (lin.betas[999] - 0.02).abs() < 1e-12);
    assert!(lin.alphas_cumprod[999] < 1e-4);
}

#[test]
fn cosine_schedule_endpoints() {
    let s = NoiseSchedule::new(ScheduleKind::Cosine, 1000);
    assert!(s.alphas_cumprod[0] > 0.9999, "{}", s.alphas_cumprod[0]);
    assert!(s.alphas_cumprod[999] < 1e-4, "{}", s.alphas_cumprod[999]);
    let mid = s.alphas_cumprod[499];
    assert!((mid - 0.5).abs() < 0.05, "mid {mid}");
    assert!(s.betas.iter().all(|&b| b <= 0.999));
}

#[test]
fn q_sample_has_the_right_mean_and_variance() {
    let s = NoiseSchedule::default_linear();
    let n = 200_000;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let eps: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    let x0 = vec![0.5f32; n];
    for t in [0, 250, 999] {
        let xt = s.q_sample(&x0, t, &eps);
        let mean = xt.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = xt.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let ab = s.alphas_cumprod[t];
        assert!((mean - 0.5 * ab.sqrt()).abs() < 0.01, "t {t}: mean {mean}");
        assert!((var - (1.0 - ab)).abs() < 0.01, "t {t}: var {var}");
    }
    let batch = s.q_sample_batch(&[1.0, 1.0, 1.0, 1.0], &[0, 999], &[0.0; 4], 2);
    assert!(batch[0] > 0.99 && batch[2] < 0.01);
}

#[test]
fn strided_timesteps_descend_from_the_last_step() {
    assert_eq!(timesteps(1000, 4), vec![999, 749, 499, 249]);
    assert_eq!(timesteps(1000, 1), vec![999]);
    assert_eq!(timesteps(10, 50).len(), 10);
    let ts = timesteps(1000, 7);
    assert!(ts.windows(2).all(|w| w[1] < w[0]));
}

#[test]
fn ddim_eta_zero_is_deterministic_and_seeded() {
    let (m, s) = (model(), NoiseSchedule::default_linear());
    let cfg = SamplerConfig::ddim(5, 3.0);
    let a = sample(&m, &s, &cfg, &caps(), 7).unwrap();
    let b = sample(&m, &s, &cfg, &caps(), 7).unwrap();
    let c = sample(&m, &s, &cfg, &caps(), 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|img| img.len() == 3 * S * S && img.iter().all(|v| (-1.0..=1.0).contains(v))));
}

#[test]
fn ddpm_and_stochastic_ddim_repeat_with_the_same_seed() {
    let (m, s) = (model(), NoiseSchedule::new(ScheduleKind::Cosine, 1000));
    for cfg in [
        SamplerConfig { kind: SamplerKind::Ddpm, steps: 6, cfg_scale: 2.0, eta: 0.0 },
        SamplerConfig { kind: SamplerKind::Ddim, steps: 6, cfg_scale: 1.0, eta: 1.0 },
    ] {
        let a = sample(&m, &s, &cfg, &caps(), 11).unwrap();
        assert_eq!(a, sample(&m, &s, &cfg, &caps(), 11).unwrap(), "{cfg:?}");
        assert_ne!(a, sample(&m, &s, &cfg, &caps(), 12).unwrap(), "{cfg:?}");
    }
}

#[test]
fn guidance_combines_conditional_and_null_predictions() {
    let m = model();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..2 * 3 * S * S).map(|_| rng.sample(StandardNormal)).collect();
    let direct = |c: &[Vec<usize>]| m.forward(m.images(x.clone()).unwrap(), &[400, 400], c).unwrap().as_vec();
    let cond = direct(&caps());
    let null = direct(&[vec![PAD; 4], vec![PAD; 4]]);
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-4);
    assert!(close(&guided_prediction(&m, &x, 400, &caps(), 1.0).unwrap(), &cond));
    // Scales 0 and 2 go through the stacked [cond; null] batch.
    assert!(close(&guided_prediction(&m, &x, 400, &caps(), 0.0).unwrap(), &null));
    let two: Vec<f32> = cond.iter().zip(&null).map(|(c, u)| u + 2.0 * (c - u)).collect();
    assert!(close(&guided_prediction(&m, &x, 400, &caps(), 2.0).unwrap(), &two));
}

#[test]
fn cfg_scale_one_sampling_equals_conditional_only() {
    let (m, s) = (model(), NoiseSchedule::default_linear());
    let guided = sample(&m, &s, &SamplerConfig::ddim(4, 1.0), &caps(), 3).unwrap();
    let nearly = sample(&m, &s, &SamplerConfig::ddim(4, 1.000_001), &caps(), 3).unwrap();
    let max_diff = guided.iter().flatten().zip(nearly.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(max_diff < 1e-3, "max diff {max_diff}");
}

#[test]
fn bad_sampler_settings_are_errors() {
    let (m, s) = (model(), NoiseSchedule::default_linear());
    let cfg = SamplerConfig { kind: SamplerKind::Ddim, steps: 2, cfg_scale: f32::NAN, eta: 0.0 };
    assert!(sample(&m, &s, &cfg, &caps(), 0).is_err());
    assert!(sample(&m, &s, &SamplerConfig::ddim(2, 2.0), &[vec![99]], 0).is_err());
    assert!(sample(&m, &s, &SamplerConfig::ddim(2, 2.0), &[], 0).unwrap().is_empty());
}

#[test]
fn guided_halves_side_by_side_give_the_batched_bits() {
    // With two rayon threads the CPU runs the conditional and the null half of each guided step side by side on
    // two devices; with one, as one stacked batch. Every layer computes each row on its own, so the samples must
    // agree bit for bit (an odd batch, so the products' row blocks and edge tiles differ between the two).
    let m = Dit::new(&DitConfig::tiny(S, 10, 4), &cpu(), 9).unwrap();
    let s = NoiseSchedule::default_linear();
    let caps: Vec<Vec<usize>> = (0..7).map(|i| vec![1 + i % 9, 2 + i % 7, 0, 0]).collect();
    let pool = |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    for cfg in
        [SamplerConfig::ddim(3, 5.0), SamplerConfig { kind: SamplerKind::Ddpm, steps: 3, cfg_scale: 2.0, eta: 0.0 }]
    {
        let side_by_side = pool(2).install(|| sample(&m, &s, &cfg, &caps, 21).unwrap());
        let batched = pool(1).install(|| sample(&m, &s, &cfg, &caps, 21).unwrap());
        assert_eq!(side_by_side, batched, "{cfg:?}");
    }
}
