"""The model-family interface the PLAN executor trains through, and `load_family`, which picks a family for a model.

A family wraps one trainable network (seppoc's DiT, a diffusers UNet or transformer, with or without LoRA) plus
whatever frozen parts turn captions and pixels into its inputs. The executor (train.py) only talks to this
interface, so one loop trains every family.
"""
import contextlib
import os

import torch


class UserError(Exception):
    """A mistake in the user's input (a file, a flag, an objective the data cannot feed): the CLI prints the
    message as one line and exits 2, without a traceback. The message names the file, column, row or flag."""


class SampleNoise:
    """The per-step noise of one reference-sampling call, drawn for the whole GLOBAL batch from one seed and cut to
    this call's rows, so samples do not depend on how the batch is split over processes or reference slots.

    `next()` returns the next draw for this call's rows (shape [len(rows), *shape], dtype float64 -> cast by the
    caller); every call to `next()` advances the stream for every row of the global batch alike. A family's
    `sample` calls it exactly once per stochastic sampler step, in step order."""

    def __init__(self, seed: int, rows: torch.Tensor, n_global: int, shape, device=None):
        self.gen = torch.Generator().manual_seed(int(seed))
        self.rows = rows.cpu()
        self.n_global = int(n_global)
        self.shape = tuple(shape)
        self.device = device

    def next(self, dtype=torch.float64) -> torch.Tensor:
        full = torch.randn((self.n_global,) + self.shape, generator=self.gen, dtype=torch.float64)
        out = full[self.rows].to(dtype)
        return out if self.device is None else out.to(self.device)


class Family:
    """One trainable diffusion model. Subclasses set the attributes and implement the methods; the defaults below
    cover the two standard forward processes from `self.alphas_cumprod` (discrete eps / v) or `self.sigmas`
    (flow), so a family only overrides what differs.

    Conventions: "training space" is what the network denoises (DiT: pixels in [-1,1]; latent families: scaled
    VAE latents). `t` is always an int64 index into the training schedule (0..num_timesteps-1). Conditions are
    dicts of batch-first tensors; the executor concatenates them along dim 0 and indexes rows, so every entry
    must have the batch as its first dimension.
    """

    name: str = "?"                      # "dit" | "sd" | "sdxl" | "sd3"
    prediction: str = "epsilon"          # "epsilon" | "v_prediction" | "flow"
    num_timesteps: int = 1000            # T of the training schedule
    resolution: int = 0                  # pixel size images are resized + centre-cropped to
    alphas_cumprod = None                # float64 [T] for epsilon / v_prediction
    sigmas = None                        # float64 [T] for flow: x_t = (1 - s) x0 + s eps, s = sigmas[t]
    source: str = ""                     # what was loaded (path or hub id), for logs and run identity

    # ---------------------------------------------------------------- the network and its trainable state
    def module(self) -> torch.nn.Module:
        """The trainable network that accelerator.prepare wraps (the executor calls `predict` with the wrapper
        for the taped pass and with this unwrapped module for no-grad passes)."""
        raise NotImplementedError

    def trainable_parameters(self):
        """[(name, Parameter)]: exactly what the optimizer updates (LoRA params, or every parameter), float32
        (float64 when the family was loaded with dtype float64)."""
        raise NotImplementedError

    def optimizer_groups(self, weight_decay: float):
        """AdamW parameter groups; default: one group of every trainable parameter with `weight_decay`."""
        return [{"params": [p for _, p in self.trainable_parameters()], "weight_decay": weight_decay}]

    # ---------------------------------------------------------------- conditioning and data
    def encode_prompts(self, prompts):
        """Captions -> condition dict (no grad, batch-first tensors on the family's device)."""
        raise NotImplementedError

    def null_cond(self, n: int):
        """The unconditional (empty prompt) condition for n samples."""
        raise NotImplementedError

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] (H = W = resolution) -> training-space tensors, no grad, deterministic given the
        pixels (a VAE's latent mean, or its sample from a generator the family owns)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the forward process
    def draw_t(self, gen: torch.Generator, n: int) -> torch.Tensor:
        """Training timesteps (int64 indices) for n samples; default uniform over the schedule."""
        return torch.randint(self.num_timesteps, (n,), generator=gen)

    def _coefficients(self, t, like):
        """(a, s) with x_t = a x0 + s eps, shaped to broadcast against `like`."""
        t = t.cpu().long()
        if self.prediction == "flow":
            s = self.sigmas.double()[t]
            a = 1.0 - s
        else:
            ab = self.alphas_cumprod.double()[t]
            a, s = ab.sqrt(), (1.0 - ab).sqrt()
        view = (-1,) + (1,) * (like.dim() - 1)
        return a.to(like.dtype).to(like.device).view(view), s.to(like.dtype).to(like.device).view(view)

    def add_noise(self, x0, eps, t):
        a, s = self._coefficients(t, x0)
        return a * x0 + s * eps

    def target(self, x0, eps, t):
        """What `predict` is trained to output: eps; v = alpha eps - sigma x0 (Salimans & Ho 2022,
        arXiv:2202.00512); flow velocity eps - x0 (Liu et al. 2022, arXiv:2209.03003)."""
        if self.prediction == "epsilon":
            return eps
        if self.prediction == "flow":
            return eps - x0
        a, s = self._coefficients(t, x0)
        return a * eps - s * x0

    def time_values(self, t):
        """float64 tensors "timestep", "alpha", "sigma", "snr" for indices t (PLAN v2 definitions, as the Rust
        trainer's src/model/time_values.rs): discrete: timestep (t+1)/T, alpha sqrt(abar), sigma sqrt(1-abar),
        snr abar/(1-abar); flow: sigma = s (after any shift), alpha = 1-s, timestep = s, snr = alpha^2/sigma^2."""
        t = t.cpu().long()
        if self.prediction == "flow":
            s = self.sigmas.double()[t]
            a = 1.0 - s
            return {"timestep": s.clone(), "alpha": a, "sigma": s, "snr": a * a / (s * s)}
        ab = self.alphas_cumprod.double()[t]
        return {"timestep": (t.double() + 1.0) / self.num_timesteps, "alpha": ab.sqrt(), "sigma": (1.0 - ab).sqrt(),
                "snr": ab / (1.0 - ab)}

    # ---------------------------------------------------------------- networks at work
    def predict(self, net, x_t, t, cond) -> torch.Tensor:
        """The network's output for x_t at indices t under `cond` (net = the DDP wrapper or the bare module)."""
        raise NotImplementedError

    def sample(self, cond, x_T, spec, gen: SampleNoise) -> torch.Tensor:
        """Reference samples in training space with the CURRENTLY ACTIVE weights, no grad. spec = a PLAN
        "samples" entry (sampler "ddim"|"ddpm", steps, cfg, eta); x_T from the caller; every stochastic step's
        noise from `gen.next()` (see SampleNoise). Flow families: "ddim" with eta 0 = Euler."""
        raise NotImplementedError

    def compile(self):
        """Run the network under `torch.compile` from now on (`--compile`); families that support it override."""
        raise UserError(f"--compile: implemented for seppoc's DiT checkpoints only, not the {self.name} family")

    # ---------------------------------------------------------------- references
    def snapshot(self):
        """A CPU copy of the trainable state ({name: tensor}, in the trainable dtype; LoRA: the adapter only)."""
        return {k: p.detach().to("cpu", copy=True) for k, p in self.trainable_parameters()}

    @contextlib.contextmanager
    def weights(self, snap):
        """Run the module with `snap` (None = the initial/base model) inside the block, then restore the trained
        weights and the exact trainable set; the policy's predictions afterwards are bit-identical to before.
        Default: copy `snap` into the trainable parameters in place and copy the saved values back (fine for a
        small network or LoRA); None needs a family-specific answer (override)."""
        if snap is None:
            raise NotImplementedError(f"{self.name}: no initial model")
        params = dict(self.trainable_parameters())
        before = self.trainable_set()
        saved = {k: p.detach().clone() for k, p in params.items()}
        try:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(snap[k])
            yield
        finally:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(saved[k])
            self.check_trainable(before)

    def trainable_set(self):
        """The names of the parameters that require grad in the module right now."""
        return frozenset(n for n, p in self.module().named_parameters() if p.requires_grad)

    def check_trainable(self, expected):
        now = self.trainable_set()
        if now != expected:
            raise AssertionError(f"{self.name}: a weight switch changed the trainable set "
                                 f"(+{sorted(now - expected)[:5]} -{sorted(expected - now)[:5]})")

    # ---------------------------------------------------------------- output and resume
    def save(self, out_dir: str):
        """The trained model in its users' format (LoRA: loadable by diffusers' load_lora_weights; full
        fine-tune: a diffusers directory; DiT: a seppoc safetensors checkpoint). Write atomically."""
        raise NotImplementedError

    def state_dict_for_resume(self):
        """What resume needs beyond the trainable parameters (the executor saves those); may be empty."""
        return {}

    def load_state_for_resume(self, d):
        pass

    def describe(self) -> str:
        return f"{self.name} ({self.prediction}, T={self.num_timesteps}, {self.resolution}px) from {self.source}"


def load_family(model: str, *, lora_rank=None, device="cpu", dtype=torch.float32, mixed_precision="no") -> Family:
    """The family for `model`: a seppoc .safetensors DiT checkpoint, a diffusers folder (model_index.json), or a
    hub id (only when online). Raises UserError naming the path and what is missing."""
    if model.endswith(".safetensors") or os.path.isfile(model):
        if not os.path.isfile(model):
            raise UserError(f"{model}: no such file")
        if not model.endswith(".safetensors"):
            raise UserError(f"{model}: not a model (expected a seppoc .safetensors checkpoint or a diffusers folder "
                            "with model_index.json)")
        if lora_rank:
            raise UserError(f"{model}: --lora-rank applies to diffusers models; seppoc's DiT trains all weights")
        from .dit import DitFamily
        return DitFamily.load(model, device=device, dtype=dtype)
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "model_index.json")):
            raise UserError(f"{model}: not a diffusers model folder (model_index.json is missing)")
    else:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        if offline or model.startswith((".", "/", "~")) or model.count("/") != 1:
            raise UserError(f"{model}: no such file or folder" +
                            (" (HF_HUB_OFFLINE is set, so it is not fetched from the hub)" if offline else ""))
    try:
        from . import diffusers_family
    except ImportError as e:
        raise UserError(f"{model}: training diffusers models needs diffusers, transformers and peft ({e})")
    # diffusers_family.load(model, lora_rank=, device=, dtype=, mixed_precision=) -> Family (SD 1.x/2.x, SDXL, SD3)
    return diffusers_family.load(model, lora_rank=lora_rank, device=device, dtype=dtype,
                                 mixed_precision=mixed_precision)
