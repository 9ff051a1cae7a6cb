"""The diffusers model families: Stable Diffusion 1.x/2.x (epsilon or v prediction), SDXL, and SD3 (rectified flow).

`load(model, lora_rank=..., ...)` reads the pipeline class from model_index.json and returns the family. Each
family trains the pipeline's denoiser (UNet2DConditionModel or SD3Transformer2DModel), either through a peft LoRA
adapter (`lora_rank`) or in full; the VAE and the text encoders are frozen, held in the mixed-precision dtype and
run without gradient. What the training loop sees (see family.py):

  SD 1.x/2.x   x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) eps on the pipeline's DDPM training schedule; target eps, or
               v = sqrt(abar_t) eps - sqrt(1-abar_t) x0 when scheduler.config.prediction_type is "v_prediction"
               (Salimans & Ho 2022); t uniform over 0..T-1; condition = the CLIP encoder's last hidden states.
  SDXL         the same forward process; condition = both encoders' penultimate hidden states side by side, the
               second encoder's pooled projection, and the size/crop ids (resolution, resolution, 0, 0,
               resolution, resolution), as diffusers' SDXL Diffusion-DPO script builds them.
  SD3          x_t = (1-s) x0 + s eps with s = the FlowMatchEulerDiscreteScheduler's sigma table (shift included);
               t = an index into that table drawn logit-normal (mean 0, std 1) as diffusers' SD3 scripts do; the
               network sees s*1000; target eps - x0, no preconditioning (Esser et al. 2024, arXiv:2403.03206).
               Without the T5 encoder its embeddings are zeros, as the pipeline does.

Latents are `vae.encode(pixels).latent_dist.sample()` times the VAE's scaling factor (SD3: minus its shift
factor first), drawn with a generator seeded from a hash of each image's pixels, so an image always gets the
same latent whichever process or batch encodes it.

References: `weights(None)` is the base model (LoRA: adapters disabled on the bare module; full fine-tuning: a
frozen copy made at load); `weights(snapshot)` loads a pool or EMA snapshot into a second adapter "ref" (LoRA) or
a second frozen copy (full fine-tuning). Every switch restores and checks the exact set of trainable parameters.
"""
import contextlib
import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings

import torch

from .family import Family, UserError

PIPELINES = {
    "StableDiffusionPipeline": "Sd",
    "StableDiffusionXLPipeline": "Sdxl",
    "StableDiffusion3Pipeline": "Sd3",
}
NOT_YET = {
    "FluxPipeline": "FLUX needs latent packing into 2x2 patches, image/text position ids, the guidance embedding "
                    "and resolution-dependent sigma shifting, which this package does not implement yet",
}
MIXED = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# Attention projections LoRA adapts: the image side (all families) and, where the blocks have them, the text side
# of SD3's joint attention (as diffusers' SD3 LoRA scripts target).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_TARGETS_JOINT = ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


def load(model, *, lora_rank=None, lora_alpha=None, device="cpu", dtype=torch.float32, mixed_precision="no",
         seed=None, resolution=None):
    """The family of the diffusers pipeline at `model` (a folder with model_index.json, or a hub id when online).

    lora_rank: train a LoRA of this rank (lora_alpha defaults to the rank, i.e. scale 1); None trains every weight.
    dtype: the trainable weights' dtype (float32, or float64 for exactness tests); mixed_precision: "no", "fp16" or
    "bf16", the dtype the frozen parts (and, with LoRA, the frozen base weights) are held in. seed: the LoRA
    initialisation, drawn from a private CPU stream so it is the same in every process and on every device
    (default: the seed the global RNG was last seeded with, torch.initial_seed()). resolution: pixel size of the
    training images (default: the denoiser's sample size times the VAE's downsampling)."""
    index = read_model_index(model)
    cls_name = index.get("_class_name")
    if cls_name in NOT_YET:
        raise UserError(f"{model}: a {cls_name}; not supported: {NOT_YET[cls_name]}")
    if cls_name not in PIPELINES:
        raise UserError(f"{model}: pipeline class {cls_name!r} is not supported (supported: "
                        f"{', '.join(PIPELINES)})")
    if mixed_precision not in MIXED:
        raise UserError(f"mixed precision {mixed_precision!r}: expected one of {', '.join(MIXED)}")
    if dtype not in (torch.float32, torch.float64):
        raise UserError(f"dtype {dtype}: the trainable weights are float32 (or float64)")
    if dtype == torch.float64 and mixed_precision != "no":
        raise UserError("float64 training does not combine with mixed precision")
    if lora_rank is not None and lora_rank < 1:
        raise UserError(f"--lora-rank {lora_rank}: must be at least 1 (leave it out to train every weight)")
    family = globals()[PIPELINES[cls_name]]
    return family(model, index, lora_rank=lora_rank, lora_alpha=lora_alpha, device=device, dtype=dtype,
                  mixed_precision=mixed_precision, seed=seed, resolution=resolution)


def read_model_index(model):
    """model_index.json of a folder, or of a hub repository (fetched by diffusers; offline it must be cached)."""
    if os.path.isdir(model):
        path = os.path.join(model, "model_index.json")
        if not os.path.isfile(path):
            raise UserError(f"{model}: not a diffusers model folder (model_index.json is missing)")
        try:
            with open(path) as f:
                index = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not readable JSON ({e})")
    else:
        from diffusers import DiffusionPipeline

        try:
            index = DiffusionPipeline.load_config(model)
        except Exception as e:
            raise UserError(f"{model}: no such folder, and not loadable as a hub model ({type(e).__name__}: {e})")
    if not isinstance(index, dict) or "_class_name" not in index:
        raise UserError(f"{model}: model_index.json names no pipeline class (_class_name)")
    return index


def _pixel_seed(image):
    """A 63-bit seed from an image's float32 pixels."""
    raw = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little") >> 1


def _bare(net):
    """The module under a DistributedDataParallel / torch.compile wrapper."""
    while True:
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return net
        net = inner


class DiffusersFamily(Family):
    """What SD, SDXL and SD3 share: loading, dtypes, LoRA or full fine-tuning, latents, references, sampling,
    saving. Subclasses say how prompts become conditions and how the denoiser is called."""

    pipeline_class = None   # the diffusers pipeline class
    net_name = "unet"       # the pipeline component that is trained
    text_parts = ()         # the frozen text encoders
    lora_targets = LORA_TARGETS
    latent_shift = False    # SD3 subtracts the VAE's shift_factor before scaling

    def __init__(self, model, index, *, lora_rank, lora_alpha, device, dtype, mixed_precision, seed, resolution):
        self.source = model
        self.index = index
        self.device = torch.device(device)
        self.dtype = dtype
        self.mixed_precision = mixed_precision
        self.frozen_dtype = MIXED[mixed_precision] or dtype
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        # Frozen parts: no grad, eval mode, the mixed-precision dtype (a VAE that overflows in fp16 stays float32
        # when its config's force_upcast asks). Loaded in their dtypes directly (no full-precision copy in memory).
        net_load_dtype = self.frozen_dtype if lora_rank else dtype
        vae_load_dtype = torch.float32 if self.frozen_dtype == torch.float16 else self.frozen_dtype
        self.pipe = self._load_pipeline({"default": self.frozen_dtype, "vae": vae_load_dtype,
                                         self.net_name: net_load_dtype})
        net = getattr(self.pipe, self.net_name)
        self.vae = self.pipe.vae
        if self.vae.dtype != self.frozen_dtype and not getattr(self.vae.config, "force_upcast", False):
            self.vae.to(dtype=self.frozen_dtype)
        # Read once: diffusers' `ModelMixin.dtype` walks every parameter (~1 ms per call on a tiny VAE).
        self.vae_dtype = self.vae.dtype
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.resolution = int(resolution or net.config.sample_size * self.vae_scale)
        if self.resolution % self.vae_scale:
            raise UserError(f"resolution {self.resolution}: not a multiple of the VAE's downsampling "
                            f"({self.vae_scale})")
        side = self.resolution // self.vae_scale
        self.latent_shape = (self.vae.config.latent_channels, side, side)
        self.scheduler_config = dict(self.pipe.scheduler.config)
        self._setup_schedule()
        self.vae.requires_grad_(False).eval().to(self.device)
        for part in self.text_parts:
            enc = getattr(self.pipe, part, None)
            if enc is not None:
                enc.requires_grad_(False).eval().to(self.device)

        net.requires_grad_(False)
        if lora_rank:
            # Base weights in the frozen dtype, adapters in `dtype`; the adapters are added on the CPU from a
            # private stream seeded with `seed`, so every process starts from the same A whatever its device.
            self._add_adapters(net, seed)
            net.to(self.device)
            self.initial_net = None
        else:
            net.to(self.device).requires_grad_(True)
            self.initial_net = copy.deepcopy(net).requires_grad_(False)
        net.train()
        self.net = net
        self.net_dtype = next(p.dtype for n, p in net.named_parameters() if "lora_" not in n)
        self._named = list(net.named_parameters())  # the module's structure is fixed from here on
        self._trainable = [(n, p) for n, p in self._named if p.requires_grad]
        self._trained_set = frozenset(n for n, _ in self._trainable)
        self._slot_net = None      # full fine-tuning: the frozen copy pool / EMA snapshots are loaded into
        self._override = None      # the module predictions and samples use inside `weights(...)`
        self._null = None
        self.name_text = f"{self.name} ({'LoRA rank %d' % lora_rank if lora_rank else 'full'})"

    # ---------------------------------------------------------------- loading
    def _load_overrides(self):
        return {}

    def _load_pipeline(self, dtypes):
        try:
            return self.pipeline_class.from_pretrained(self.source, dtype=dtypes, **self._load_overrides())
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{self.source}: the {self.pipeline_class.__name__} does not load "
                            f"({type(e).__name__}: {e})")

    def _setup_schedule(self):
        from diffusers import DDPMScheduler

        self.train_scheduler = DDPMScheduler.from_config(self.scheduler_config)
        self.prediction = self.train_scheduler.config.prediction_type
        if self.prediction not in ("epsilon", "v_prediction"):
            raise UserError(f"{self.source}: prediction type {self.prediction!r} (supported: epsilon, v_prediction)")
        self.num_timesteps = int(self.train_scheduler.config.num_train_timesteps)
        self.alphas_cumprod = self.train_scheduler.alphas_cumprod.double()

    def _add_adapters(self, net, seed):
        from peft import LoraConfig

        names = [n for n, _ in net.named_modules()]
        targets = [t for t in self.lora_targets if any(n == t or n.endswith("." + t) for n in names)]
        if not targets:
            raise UserError(f"{self.source}: the {self.net_name} has none of the LoRA target layers "
                            f"{', '.join(self.lora_targets)}")
        self.lora_config = LoraConfig(r=self.lora_rank, lora_alpha=self.lora_alpha, init_lora_weights="gaussian",
                                      target_modules=targets)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch.initial_seed() if seed is None else seed)
            net.add_adapter(self.lora_config)                       # "default": A ~ N(0, 1/r), B = 0
            with warnings.catch_warnings():  # peft warns that a second adapter is a second adapter
                warnings.simplefilter("ignore")
                net.add_adapter(self.lora_config, adapter_name="ref")   # pool / EMA slots are loaded here
        net.set_adapter("default")
        for n, p in net.named_parameters():
            if "lora_" in n:
                p.data = p.data.to(self.dtype)
            p.requires_grad_(".default." in n and "lora_" in n)
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._tuner_layers = [m for m in net.modules() if isinstance(m, BaseTunerLayer)]
        self._ref_params = {}
        params = dict(net.named_parameters())
        for n in params:
            if ".default." in n and "lora_" in n:
                self._ref_params[n] = params[n.replace(".default.", ".ref.")]

    # ---------------------------------------------------------------- the network
    def module(self):
        return self.net

    def trainable_parameters(self):
        return list(self._trainable)

    def _route(self, net):
        """The module to run: inside `weights(...)` the reference (when given the policy, wrapped or bare)."""
        if net is None:
            return self._override if self._override is not None else self.net
        if self._override is not None and (net is self.net or _bare(net) is self.net):
            return self._override
        return net

    def predict(self, net, x_t, t, cond):
        return self._forward(self._route(net), x_t, self._model_timestep(t), cond)

    def _model_timestep(self, t):
        return t.to(self.device)

    def _cast(self, x):
        return x.to(self.device, self.net_dtype) if x.is_floating_point() else x.to(self.device)

    # ---------------------------------------------------------------- conditions and latents
    def encode_prompts(self, prompts):
        with torch.no_grad():
            return self._encode(list(prompts), negative=False)

    def null_cond(self, n):
        if self._null is None:
            with torch.no_grad():
                self._null = self._encode([""], negative=True)
        return {k: v.expand(n, *v.shape[1:]).clone() for k, v in self._null.items()}

    def encode_images(self, pixels):
        with torch.no_grad():
            dist = self.vae.encode(pixels.to(self.device, self.vae_dtype)).latent_dist
            gens = [torch.Generator().manual_seed(_pixel_seed(img)) for img in pixels]
            z = dist.sample(generator=gens)
            if self.latent_shift and self.vae.config.shift_factor is not None:
                z = z - self.vae.config.shift_factor
            # The VAE hands back channels-last latents; a contiguous copy keeps every later op's memory layout
            # (and so its rounding) the same in every pass.
            return (z * self.vae.config.scaling_factor).to(self.dtype).contiguous()

    # ---------------------------------------------------------------- references
    @contextlib.contextmanager
    def weights(self, snap):
        if self._override is not None:
            raise RuntimeError(f"{self.name}: weights(...) blocks do not nest")
        before = self.trainable_set()
        net = self.net
        try:
            with torch.no_grad():
                if self.lora_rank:
                    if snap is not None:
                        self._load_snapshot(self._ref_params, snap)
                    self._switch_adapters(snap, reference=True)
                    self._override = net
                else:
                    if snap is None:
                        ref = self.initial_net
                    else:
                        if self._slot_net is None:
                            self._slot_net = copy.deepcopy(self.initial_net)
                        ref = self._slot_net
                        self._load_snapshot(dict(ref.named_parameters()), snap)
                    ref.train(net.training)
                    self._override = ref
            yield self._override
        finally:
            self._override = None
            if self.lora_rank:
                self._switch_adapters(snap, reference=False)
            self.check_trainable(before)

    def _switch_adapters(self, snap, reference):
        """To the reference (adapters disabled for the base model, else the "ref" adapter) or back to the policy,
        through peft's per-layer switches (what diffusers' disable_adapters / set_adapter loop over, without their
        per-call package version check); then the exact trained set requires grad again."""
        for layer in self._tuner_layers:
            if snap is None:
                layer.enable_adapters(not reference)
            else:
                layer.set_adapter("ref" if reference else "default")
        self._restore_trainable()

    def trainable_set(self):
        return frozenset(n for n, p in self._named if p.requires_grad)

    def _restore_trainable(self):
        """peft's adapter switches set requires_grad on adapter layers; put back exactly the trained set."""
        for n, p in self._named:
            p.requires_grad_(n in self._trained_set)

    def _load_snapshot(self, params, snap):
        names = {n for n, _ in self._trainable}
        if set(snap) != names:
            missing, extra = sorted(names - set(snap)), sorted(set(snap) - names)
            raise ValueError(f"{self.name}: a snapshot that does not match the trainable parameters "
                             f"(missing {missing[:3]}, unexpected {extra[:3]})")
        for n, v in snap.items():
            params[n].copy_(v)

    # ---------------------------------------------------------------- sampling
    def check_sample_spec(self, spec):
        """Raises UserError if this family cannot draw samples as `spec` (a PLAN "samples" entry) asks."""
        if spec["sampler"] not in ("ddim", "ddpm"):
            raise UserError(f"sampler {spec['sampler']!r}: expected ddim or ddpm")
        if int(spec["steps"]) < 1:
            raise UserError(f"sampler steps {spec['steps']}: at least 1")

    def sample(self, cond, x_T, spec, gen):
        self.check_sample_spec(spec)
        with torch.no_grad():
            return self._sample(self._route(None), cond, x_T, spec, gen)

    def _guided(self, net, x, timestep, cond, null, w):
        """The guided model output u + w (c - u) on a [cond; null] batch (w = 1: the conditional output)."""
        b = x.shape[0]
        if w == 1.0:
            return self._forward(net, x, timestep.expand(b), cond).to(x.dtype)
        both = {k: torch.cat([cond[k].to(self.device), null[k].to(self.device)]) for k in cond}
        out = self._forward(net, torch.cat([x, x]), timestep.expand(2 * b), both).to(x.dtype)
        c, u = out[:b], out[b:]
        return u + w * (c - u)

    def _sample(self, net, cond, x_T, spec, gen):
        """DDIM (eta) or DDPM on the pipeline's schedule, from a private scheduler built from its config."""
        from diffusers import DDIMScheduler, DDPMScheduler

        kind, steps, w, eta = spec["sampler"], int(spec["steps"]), float(spec["cfg"]), float(spec.get("eta", 0.0))
        cfg = dict(self.scheduler_config)
        # Latents are not bounded to [-1, 1]: no x0 clipping unless the pipeline's config asks for it.
        cfg.setdefault("clip_sample", False)
        x = x_T.to(self.device, self.dtype)
        null = self.null_cond(x.shape[0])
        if kind == "ddim":
            sched = DDIMScheduler.from_config(cfg)
            sched.set_timesteps(steps, device=self.device)
            for t in sched.timesteps:
                pred = self._guided(net, x, t, cond, null, w)
                noise = gen.next().to(self.device, x.dtype) if eta > 0 else None
                x = sched.step(pred, t, x, eta=eta, variance_noise=noise).prev_sample
            return x
        sched = DDPMScheduler.from_config(cfg)
        if sched.config.variance_type != "fixed_small":
            raise UserError(f"{self.source}: DDPM sampling implements the fixed_small variance only "
                            f"(the scheduler config says {sched.config.variance_type!r})")
        sched.set_timesteps(steps, device=self.device)
        for t in sched.timesteps:
            pred = self._guided(net, x, t, cond, null, w)
            x = self.ddpm_step(sched, pred, t, x, gen.next if int(t) > 0 else None)
        return x

    @staticmethod
    def ddpm_step(sched, pred, t, x, draw):
        """One ancestral step x_t -> x_prev of DDPM (Ho et al. 2020, eqs. 6-7) on `sched`'s strided schedule,
        with the fixed_small variance, as DDPMScheduler.step computes it but with the noise from `draw()` (the
        caller's global-batch stream; None: no noise, as at t = 0)."""
        ac = sched.alphas_cumprod.to(x.device)
        prev = int(sched.previous_timestep(t))
        ab = ac[int(t)]
        ab_prev = ac[prev] if prev >= 0 else torch.ones((), dtype=ac.dtype, device=ac.device)
        alpha = ab / ab_prev
        beta = 1 - alpha
        if sched.config.prediction_type == "epsilon":
            x0 = (x - (1 - ab) ** 0.5 * pred) / ab ** 0.5
        else:
            x0 = ab ** 0.5 * x - (1 - ab) ** 0.5 * pred
        if sched.config.clip_sample:
            x0 = x0.clamp(-sched.config.clip_sample_range, sched.config.clip_sample_range)
        mean = (ab_prev ** 0.5 * beta / (1 - ab)) * x0 + (alpha ** 0.5 * (1 - ab_prev) / (1 - ab)) * x
        if draw is None:
            return mean
        var = torch.clamp((1 - ab_prev) / (1 - ab) * beta, min=1e-20)
        return mean + var ** 0.5 * draw().to(x.device, x.dtype)

    # ---------------------------------------------------------------- saving
    def save(self, out_dir, step=None):
        """LoRA: `pytorch_lora_weights.safetensors` with the adapter's config as metadata (diffusers'
        `load_lora_weights` reloads it at the trained scale); full fine-tuning: the whole pipeline with the
        trained denoiser (`from_pretrained` loads it). Written to a temporary folder beside `out_dir`, then moved
        in, replacing earlier output of the same names."""
        from peft.utils import get_peft_model_state_dict

        os.makedirs(out_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".save-", dir=out_dir)
        try:
            if self.lora_rank:
                state = {k: v.detach().to("cpu", torch.float32).contiguous()
                         for k, v in get_peft_model_state_dict(self.net, adapter_name="default").items()}
                meta = self.net.peft_config["default"].to_dict()
                self.pipeline_class.save_lora_weights(
                    tmp, **{f"{self.net_name}_lora_layers": state, f"{self.net_name}_lora_adapter_metadata": meta})
            else:
                self._full_pipeline().save_pretrained(tmp)
            for entry in os.listdir(tmp):
                src, dst = os.path.join(tmp, entry), os.path.join(out_dir, entry)
                if os.path.isdir(dst) and not os.path.islink(dst):
                    old = tempfile.mkdtemp(prefix=".old-", dir=out_dir)
                    os.rename(dst, os.path.join(old, entry))
                    os.rename(src, dst)
                    shutil.rmtree(old)
                else:
                    os.replace(src, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out_dir

    def _full_pipeline(self):
        """The pipeline with the trained denoiser; the frozen parts as loaded (reloaded from the source when
        mixed precision holds them in a lower precision)."""
        if MIXED[self.mixed_precision] is None:
            return self.pipe
        overrides = dict(self._load_overrides(), **{self.net_name: self.net})
        return self.pipeline_class.from_pretrained(self.source, **overrides)

    def describe(self):
        return (f"{self.name_text}: {self.pipeline_class.__name__} ({self.prediction}, T={self.num_timesteps}, "
                f"{self.resolution}px, latents {'x'.join(map(str, self.latent_shape))}) from {self.source}")


class Sd(DiffusersFamily):
    """Stable Diffusion 1.x / 2.x (epsilon or v prediction)."""

    name = "sd"
    text_parts = ("text_encoder",)

    @property
    def pipeline_class(self):
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline

    def _load_overrides(self):
        # The safety checker filters decoded images; training never decodes, so it is not loaded.
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def _encode(self, prompts, negative):
        pos, neg = self.pipe.encode_prompt(prompts, self.device, 1, negative)
        return {"encoder_hidden_states": (neg if negative else pos).to(self.frozen_dtype)}

    def _forward(self, net, x, timestep, cond):
        return net(self._cast(x), timestep.to(self.device),
                   encoder_hidden_states=self._cast(cond["encoder_hidden_states"]), return_dict=False)[0]


class Sdxl(DiffusersFamily):
    """SDXL: two CLIP encoders, pooled text embeddings and size/crop conditioning."""

    name = "sdxl"
    text_parts = ("text_encoder", "text_encoder_2")

    @property
    def pipeline_class(self):
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline

    def _encode(self, prompts, negative):
        pos, neg, pooled, neg_pooled = self.pipe.encode_prompt(prompts, device=self.device, num_images_per_prompt=1,
                                                               do_classifier_free_guidance=negative)
        if negative:
            pos, pooled = neg, neg_pooled
        # Original size, crop top-left, target size: (res, res), (0, 0), (res, res), as the SDXL DPO script.
        r = float(self.resolution)
        ids = torch.tensor([[r, r, 0.0, 0.0, r, r]], device=self.device).expand(len(prompts), 6)
        return {"encoder_hidden_states": pos.to(self.frozen_dtype), "text_embeds": pooled.to(self.frozen_dtype),
                "time_ids": ids.to(self.frozen_dtype)}

    def _forward(self, net, x, timestep, cond):
        added = {"text_embeds": self._cast(cond["text_embeds"]), "time_ids": self._cast(cond["time_ids"])}
        return net(self._cast(x), timestep.to(self.device), encoder_hidden_states=self._cast(cond["encoder_hidden_states"]),
                   added_cond_kwargs=added, return_dict=False)[0]


class Sd3(DiffusersFamily):
    """Stable Diffusion 3 / 3.5: MMDiT transformer, rectified flow."""

    name = "sd3"
    net_name = "transformer"
    text_parts = ("text_encoder", "text_encoder_2", "text_encoder_3")
    lora_targets = LORA_TARGETS + LORA_TARGETS_JOINT
    latent_shift = True
    t5_length = 256  # the pipeline's default max_sequence_length (its zero T5 embeddings have this length too)

    @property
    def pipeline_class(self):
        from diffusers import StableDiffusion3Pipeline

        return StableDiffusion3Pipeline

    def _load_overrides(self):
        # A pipeline saved without T5 lists text_encoder_3 as [null, null]; from_pretrained then needs to be told.
        out = {}
        for part in ("text_encoder_3", "tokenizer_3"):
            entry = self.index.get(part)
            if entry is None or (isinstance(entry, (list, tuple)) and entry[0] is None):
                out[part] = None
        return out

    def _setup_schedule(self):
        from diffusers import FlowMatchEulerDiscreteScheduler

        if self.scheduler_config.get("use_dynamic_shifting"):
            raise UserError(f"{self.source}: the scheduler shifts sigmas by resolution (use_dynamic_shifting); "
                            "only a fixed shift is supported")
        # Training has its own scheduler: sampling's set_timesteps rewrites a scheduler's tables.
        self.train_scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)
        self.prediction = "flow"
        self.num_timesteps = int(self.train_scheduler.config.num_train_timesteps)
        self.sigmas = self.train_scheduler.sigmas.double()
        self._train_timesteps = self.train_scheduler.timesteps.clone()

    def draw_t(self, gen, n):
        """Logit-normal (mean 0, std 1) u in (0, 1) -> index floor(u T) into the (descending) sigma table, as
        diffusers' SD3 scripts (weighting_scheme logit_normal) draw training timesteps."""
        u = torch.sigmoid(torch.normal(0.0, 1.0, (n,), generator=gen))
        return (u * self.num_timesteps).long().clamp(max=self.num_timesteps - 1)

    def _model_timestep(self, t):
        return self._train_timesteps[t.cpu().long()].to(self.device)

    def _encode(self, prompts, negative):
        out = self.pipe.encode_prompt(prompts if not negative else [""] * len(prompts), None, None,
                                      device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False,
                                      max_sequence_length=self.t5_length)
        return {"encoder_hidden_states": out[0].to(self.frozen_dtype), "pooled_projections": out[2].to(self.frozen_dtype)}

    def _forward(self, net, x, timestep, cond):
        return net(hidden_states=self._cast(x), timestep=timestep.to(self.device),
                   encoder_hidden_states=self._cast(cond["encoder_hidden_states"]),
                   pooled_projections=self._cast(cond["pooled_projections"]), return_dict=False)[0]

    def check_sample_spec(self, spec):
        super().check_sample_spec(spec)
        kind, eta = spec["sampler"], float(spec.get("eta", 0.0))
        if kind != "ddim" or eta != 0.0:
            raise UserError(f"sampler {kind} (eta {eta}): {self.name} is a flow model, sampled with Euler steps "
                            "(`ddim` with eta 0); stochastic flow sampling is not implemented")

    def _sample(self, net, cond, x_T, spec, gen):
        """Euler on the flow ODE over the pipeline's FlowMatchEulerDiscreteScheduler (a private copy)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        sched = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config, stochastic_sampling=False)
        sched.set_timesteps(int(spec["steps"]), device=self.device)
        x = x_T.to(self.device, self.dtype)
        null = self.null_cond(x.shape[0])
        for t in sched.timesteps:
            pred = self._guided(net, x, t, cond, null, float(spec["cfg"]))
            x = sched.step(pred, t, x).prev_sample.to(self.dtype)
        return x
