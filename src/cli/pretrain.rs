//! `seppoc pretrain`: trains the DiT from scratch with ε-MSE on the world's noisy "web" distribution (images, or
//! clips with `--world video`) and writes `model.safetensors`, `metrics.jsonl` and `recipe.json` into the
//! output directory.

use super::engine::{command_line, progress_bar, write_json, DeviceArgs, JsonlWriter};
use super::load::{ScheduleSpec, WorldFlag, SCHEDULE_KEY, WORLD_KEY};
use crate::data::{Image, VideoWorld, VideoWorldConfig, Vocab, World, WorldConfig, MAX_TOKENS};
use crate::device::{with_device, Backend, OnDevice};
use crate::model::{
    blank_caption, save_checkpoint, train_step_mse, AdamW, AdamWConfig, CheckpointMeta, Dit, DitConfig, Ema, MseBatch,
    ScheduleKind,
};
use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Model size preset.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Patch 4, width 96, 4 blocks (`DitConfig::small`): the shipped base models.
    Small,
    /// Patch 4, width 32, 2 blocks: for tests.
    Tiny,
}

/// How the learning rate moves after warmup.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrSchedule {
    /// Cosine decay from `--lr` to a tenth of it at the last step.
    Cosine,
    /// Constant `--lr`.
    Constant,
}

/// Noise schedule of the forward process (stored in the checkpoint; `sample` and `eval` read it back).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleFlag {
    /// Cosine `alphas_cumprod` (Nichol & Dhariwal, arXiv:2102.09672): few near-pure-noise steps, suits 16px images.
    Cosine,
    /// Linear betas 1e-4..0.02 (Ho et al., arXiv:2006.11239).
    Linear,
    /// Stable Diffusion's scaled-linear betas.
    ScaledLinear,
}

/// Arguments of `seppoc pretrain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory (created if missing; default `assets/base`, or `assets/base_video` with `--world video`).
    #[arg(long)]
    out: Option<String>,
    /// Which world to pretrain on: still images or short clips in motion.
    #[arg(long, value_enum, default_value_t = WorldFlag::Image)]
    world: WorldFlag,
    /// Frames per clip with `--world video` (2..=16; default 4).
    #[arg(long)]
    frames: Option<usize>,
    /// Number of optimizer steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Web examples per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate of AdamW.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Linear warmup length in steps.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Learning-rate schedule after warmup.
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    lr_schedule: LrSchedule,
    /// Noise schedule (1000 training timesteps).
    #[arg(long, value_enum, default_value_t = ScheduleFlag::Cosine)]
    schedule: ScheduleFlag,
    /// Seed of the weights, the data stream and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model size.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    size: Size,
    /// Image side in pixels (world and model).
    #[arg(long, default_value_t = 16)]
    image_size: usize,
    /// Probability of replacing a caption by the null (all-PAD) caption, for classifier-free guidance.
    #[arg(long, default_value_t = 0.1)]
    caption_dropout: f64,
    /// Probability that a web example's image is degraded (noise, blur, colour shift; default: the world's 0.3).
    /// Stored with the world config, so the preference data of later runs is unchanged by it.
    #[arg(long)]
    web_degrade: Option<f64>,
    /// EMA decay of the saved weights (0 = save the raw weights); warmed up as `min(d, (1+s)/(10+s))`.
    #[arg(long, default_value_t = 0.999)]
    ema: f32,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f32,
    /// Also write the checkpoint every N steps (0 = only at the end).
    #[arg(long, default_value_t = 250)]
    save_every: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Checks the flags before any work is done.
fn validate(args: &Args) -> anyhow::Result<()> {
    if args.steps == 0 || args.batch == 0 {
        bail!("--steps and --batch must be at least 1");
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr must be a positive number, found {}", args.lr);
    }
    if !(0.0..=1.0).contains(&args.caption_dropout) {
        bail!("--caption-dropout must be in [0, 1], found {}", args.caption_dropout);
    }
    if let Some(p) = args.web_degrade.filter(|p| !(0.0..=1.0).contains(p)) {
        bail!("--web-degrade must be in [0, 1], found {p}");
    }
    if !(0.0..1.0).contains(&args.ema) {
        bail!("--ema must be in [0, 1), found {}", args.ema);
    }
    if !(args.max_grad_norm.is_finite() && args.max_grad_norm > 0.0) {
        bail!("--max-grad-norm must be a positive number, found {}", args.max_grad_norm);
    }
    if args.frames.is_some() && args.world != WorldFlag::Video {
        bail!("--frames needs --world video");
    }
    Ok(())
}

/// Learning rate before warmup scaling at `step_idx` (0-based) of `n_steps`.
fn lr_at(args: &Args, step_idx: usize) -> f32 {
    match args.lr_schedule {
        LrSchedule::Constant => args.lr,
        LrSchedule::Cosine => {
            let span = args.steps.saturating_sub(args.warmup).max(1) as f32;
            let progress = (step_idx.saturating_sub(args.warmup) as f32 / span).min(1.0);
            args.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()))
        }
    }
}

/// The world a model is pretrained on.
enum TrainWorld {
    Image(World),
    Video(VideoWorld),
}

impl TrainWorld {
    /// Builds the world the flags select.
    fn new(args: &Args) -> anyhow::Result<TrainWorld> {
        match args.world {
            WorldFlag::Image => {
                let mut cfg = WorldConfig::default_16();
                cfg.image_size = args.image_size;
                cfg.web.p_degrade = args.web_degrade.unwrap_or(cfg.web.p_degrade);
                Ok(TrainWorld::Image(World::new(cfg).map_err(|e| anyhow::anyhow!("--image-size: {e}"))?))
            }
            WorldFlag::Video => {
                let mut cfg = VideoWorldConfig::default_16();
                cfg.image_size = args.image_size;
                cfg.frames = args.frames.unwrap_or(cfg.frames);
                cfg.web.p_degrade = args.web_degrade.unwrap_or(cfg.web.p_degrade);
                Ok(TrainWorld::Video(VideoWorld::new(cfg).map_err(|e| anyhow::anyhow!("--image-size/--frames: {e}"))?))
            }
        }
    }

    fn vocab(&self) -> &Vocab {
        match self {
            TrainWorld::Image(w) => &w.vocab,
            TrainWorld::Video(w) => &w.vocab,
        }
    }

    /// Frames per sample (1 for images).
    fn frames(&self) -> usize {
        match self {
            TrainWorld::Image(_) => 1,
            TrainWorld::Video(w) => w.config.frames,
        }
    }

    /// The world config as stored in the checkpoint header (fields in declaration order).
    fn config_string(&self) -> serde_json::Result<String> {
        match self {
            TrainWorld::Image(w) => serde_json::to_string(&w.config),
            TrainWorld::Video(w) => serde_json::to_string(&w.config),
        }
    }

    fn web_example(&self, rng: &mut ChaCha8Rng) -> (Image, String) {
        match self {
            TrainWorld::Image(w) => w.web_example(rng),
            TrainWorld::Video(w) => w.web_example(rng),
        }
    }
}

/// One batch of web examples; captions are blanked with probability `caption_dropout`.
fn web_batch(world: &TrainWorld, n: usize, caption_dropout: f64, rng: &mut ChaCha8Rng) -> MseBatch {
    let mut x0 = Vec::new();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let (image, caption) = world.web_example(rng);
        x0.extend_from_slice(&image.data);
        let mut ids = world.vocab().encode(&caption);
        if rng.gen_bool(caption_dropout) {
            blank_caption(&mut ids);
        }
        tokens.push(ids);
    }
    MseBatch { x0, tokens }
}

/// The run's description, stored in the checkpoint header and in `recipe.json`.
struct RunInfo {
    command: String,
    world: WorldFlag,
    schedule: ScheduleSpec,
    world_json: String,
    train_json: serde_json::Value,
}

/// Writes the checkpoint at `step` with the run's metadata.
fn save<D: Backend>(path: &Path, model: &Dit<D>, info: &RunInfo, seed: u64, step: usize) -> anyhow::Result<()> {
    let mut extra = BTreeMap::new();
    extra.insert("command".to_string(), info.command.clone());
    extra.insert("kind".to_string(), "pretrain".to_string());
    if info.world == WorldFlag::Video {
        extra.insert(WORLD_KEY.to_string(), info.world.name().to_string());
    }
    extra.insert("train".to_string(), info.train_json.to_string());
    extra.insert(SCHEDULE_KEY.to_string(), serde_json::to_string(&info.schedule)?);
    let meta = CheckpointMeta { world_config: info.world_json.clone(), seed, step: step as u64, extra };
    save_checkpoint(path, model, &meta)?;
    Ok(())
}

/// Runs `seppoc pretrain`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(args.device.kind())?;
    validate(&args)?;
    let world = TrainWorld::new(&args)?;
    let (s, v) = (args.image_size, world.vocab().len());
    let model_cfg = match args.size {
        Size::Small => DitConfig::small(s, v, MAX_TOKENS),
        Size::Tiny => DitConfig::tiny(s, v, MAX_TOKENS),
    }
    .with_frames(world.frames());
    model_cfg.validate().map_err(|e| anyhow::anyhow!("--image-size {s} does not fit the model: {e}"))?;
    let default_out = if args.world == WorldFlag::Video { "assets/base_video" } else { "assets/base" };
    let out = PathBuf::from(args.out.as_deref().unwrap_or(default_out));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let ckpt = out.join("model.safetensors");

    let device = args.device.kind();
    with_device(device, PretrainJob { args, world, model_cfg, out, ckpt })?
}

/// Everything `pretrain` resolved before choosing the device.
struct PretrainJob {
    args: Args,
    world: TrainWorld,
    model_cfg: DitConfig,
    out: PathBuf,
    ckpt: PathBuf,
}

impl OnDevice for PretrainJob {
    type Output = anyhow::Result<ExitCode>;

    fn run<D: Backend>(self, dev: D) -> anyhow::Result<ExitCode> {
        let PretrainJob { args, world, model_cfg, out, ckpt } = self;
        let mut model = Dit::new(&model_cfg, &dev, args.seed)?;
        let opt_cfg = AdamWConfig { warmup_steps: args.warmup, ..AdamWConfig::with_lr(args.lr) };
        let mut opt = AdamW::new(&model, opt_cfg.clone());
        let mut ema = (args.ema > 0.0).then(|| Ema::new(&model));
        let kind = match args.schedule {
            ScheduleFlag::Cosine => ScheduleKind::Cosine,
            ScheduleFlag::Linear => ScheduleKind::Linear,
            ScheduleFlag::ScaledLinear => ScheduleKind::ScaledLinear,
        };
        let schedule_spec = ScheduleSpec { kind, n_steps: 1000 };
        let schedule = schedule_spec.build();
        // Separate streams of one seed: the data does not shift when the noise draws change, and vice versa.
        let mut data_rng = ChaCha8Rng::seed_from_u64(args.seed);
        data_rng.set_stream(1);
        let mut noise_rng = ChaCha8Rng::seed_from_u64(args.seed);
        noise_rng.set_stream(2);

        let info = RunInfo {
            command: command_line(),
            world: args.world,
            schedule: schedule_spec,
            world_json: world.config_string()?,
            train_json: json!({
                "steps": args.steps, "batch": args.batch, "lr": args.lr, "warmup": args.warmup,
                "lr_schedule": format!("{:?}", args.lr_schedule).to_lowercase(), "optimizer": opt_cfg,
                "caption_dropout": args.caption_dropout, "ema": args.ema, "max_grad_norm": args.max_grad_norm,
                "size": format!("{:?}", args.size).to_lowercase(), "schedule": schedule_spec,
            }),
        };
        eprintln!(
            "pretraining a {} {} DiT ({} parameters) for {} steps of {} web examples into `{}`",
            format!("{:?}", args.size).to_lowercase(),
            args.world.name(),
            model.n_params(),
            args.steps,
            args.batch,
            out.display()
        );
        let mut metrics = JsonlWriter::create(&out.join("metrics.jsonl"))?;
        let bar = progress_bar(args.steps as u64, "pretrain");
        let start = Instant::now();
        let mut losses = Vec::with_capacity(args.steps);
        for step_idx in 0..args.steps {
            opt.cfg.lr = lr_at(&args, step_idx);
            let lr = opt.current_lr();
            let batch = web_batch(&world, args.batch, args.caption_dropout, &mut data_rng);
            let stats = train_step_mse(&mut model, &mut opt, &schedule, &batch, args.max_grad_norm, &mut noise_rng)?;
            if !stats.loss.is_finite() {
                bail!("the loss became {} at step {}; try a lower --lr", stats.loss, step_idx + 1);
            }
            if let Some(ema) = &mut ema {
                let warm = (1.0 + step_idx as f32) / (10.0 + step_idx as f32);
                ema.update(&model, args.ema.min(warm));
            }
            losses.push(stats.loss);
            let elapsed = start.elapsed().as_secs_f64();
            metrics.write(&json!({
                "step": step_idx + 1, "loss": stats.loss, "grad_norm": stats.grad_norm, "lr": lr, "elapsed_s": elapsed,
            }))?;
            bar.set_message(format!("loss {:.4}", stats.loss));
            bar.inc(1);
            let step = step_idx + 1;
            if args.save_every > 0 && step % args.save_every == 0 && step < args.steps {
                save(&ckpt, ema.as_ref().map_or(&model, Ema::model), &info, args.seed, step)?;
            }
        }
        bar.finish_and_clear();
        let wall = start.elapsed().as_secs_f64();
        save(&ckpt, ema.as_ref().map_or(&model, Ema::model), &info, args.seed, args.steps)?;

        let tail = losses.len().min(50);
        let final_loss = losses[losses.len() - tail..].iter().sum::<f32>() / tail as f32;
        let bytes = std::fs::read(&ckpt).with_context(|| format!("cannot read back `{}`", ckpt.display()))?;
        let sha = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let recipe = json!({
            "command": info.command, "seed": args.seed, "steps": args.steps, "wall_time_s": wall,
            "final_loss": final_loss, "final_loss_note": format!("mean ε-MSE over the last {tail} steps"),
            "last_loss": losses.last(), "n_params": model.n_params(), "model_config": model_cfg,
            "world": args.world.name(), "world_config": serde_json::from_str::<serde_json::Value>(&info.world_json)?, "train": info.train_json, "saved_weights": if ema.is_some() { "ema" } else { "raw" },
            "checkpoint": "model.safetensors", "checkpoint_sha256": sha, "checkpoint_bytes": bytes.len(),
        });
        write_json(&out.join("recipe.json"), &recipe)?;
        println!("wrote `{}` after {} steps in {wall:.1} s; final loss {final_loss:.5}", ckpt.display(), args.steps);
        Ok(ExitCode::SUCCESS)
    }
}
