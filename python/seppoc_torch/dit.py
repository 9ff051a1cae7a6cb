"""seppoc's own DiT (src/model/dit.rs, image world) as a Family: trains every weight of a seppoc .safetensors
checkpoint, epsilon-prediction on 16x16 RGB images in [-1, 1] (the training space is pixel space)."""
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .family import Family, UserError

PAD = 0
UNK = 1
# The image world's fixed vocabulary (src/data/vocab.rs): PAD, UNK, function words, colours, shapes, positions.
VOCAB = ["<pad>", "<unk>", "a", "an", "and", "on", "at", "in", "the", "red", "green", "blue", "yellow", "circle",
         "square", "triangle", "left", "right", "top", "bottom", "center"]


def tokenize(text, max_tokens):
    """As `Vocab::encode`: lowercased, split on anything that is not a letter, unknown words UNK, padded with PAD
    or truncated to `max_tokens`; "" is all PAD (the null condition)."""
    words = "".join(c if c.isalpha() else " " for c in text.lower()).split()
    ids = [VOCAB.index(w) if w in VOCAB else UNK for w in words][:max_tokens]
    return ids + [PAD] * (max_tokens - len(ids))


def alphas_cumprod(kind, n):
    """The schedule's cumulative products as src/model/schedule.rs builds them (float64)."""
    n = max(int(n), 2)
    scale = 1000.0 / n
    if kind == "linear":
        lo, hi = 1e-4 * scale, 0.02 * scale
        betas = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    elif kind == "scaled_linear":
        lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
        betas = [(lo + (hi - lo) * i / (n - 1)) ** 2 for i in range(n)]
    elif kind == "cosine":
        f = lambda t: math.cos((t / n + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1.0 - f(i + 1.0) / f(float(i)), 0.999) for i in range(n)]
    else:
        raise UserError(f"unknown schedule kind {kind!r}")
    out, acc = [], 1.0
    for b in betas:
        acc *= 1.0 - b
        out.append(acc)
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- the network (src/model/dit.rs)
def timestep_embedding(t, dim, dtype=None):
    dtype = dtype or torch.get_default_dtype()
    half = dim // 2
    j = torch.arange(half, dtype=torch.float64)
    freq = torch.exp(-math.log(10000.0) * j / half)
    arg = t.double()[:, None] * freq[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1).to(dtype)


def text_pool(tokens, vocab, max_tokens, dtype=None):
    """Bag of words plus bag of (position, word); an all-PAD caption is the null condition (row 0)."""
    dtype = dtype or torch.get_default_dtype()
    b = tokens.shape[0]
    pool = torch.zeros(b, vocab * (max_tokens + 1), dtype=dtype)
    real = tokens != PAD
    n = real.sum(1)
    pool[n == 0, 0] = 1.0
    w = torch.where(n > 0, 1.0 / n.clamp(min=1).to(dtype), torch.zeros((), dtype=dtype))
    rows, pos = real.nonzero(as_tuple=True)
    ids = tokens[rows, pos]
    pool.index_put_((rows, ids), w[rows], accumulate=True)
    pool.index_put_((rows, vocab * (pos + 1) + ids), w[rows], accumulate=True)
    return pool


def dit_forward(P, cfg, x, t, tokens, core=None):
    """The DiT's noise prediction for images `x` at timesteps `t` with captions `tokens` (weights `P`); `core` is
    `dit_core` or a compiled version of it (the embeddings stay eager: the caption pool's scatter is host work)."""
    temb = timestep_embedding(t.cpu(), cfg["width"], x.dtype).to(x.device)
    pool = text_pool(tokens.cpu(), cfg["vocab_size"], cfg["max_tokens"], x.dtype).to(x.device)
    return (core or dit_core)(P, cfg, x, temb, pool)


def dit_core(P, cfg, x, temb, pool):
    """The DiT on a precomputed timestep embedding and caption pool (bench/dit_torch.py times this)."""
    B, C, S, _ = x.shape
    p, W, H = cfg["patch_size"], cfg["width"], cfg["heads"]
    n = (S // p) ** 2

    def lin(name, h):
        return h @ P[name + ".weight"] + P[name + ".bias"]

    xp = x.reshape(B, C, S // p, p, S // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B * n, p * p * C)
    cond = lin("t_embed.fc2", F.silu(lin("t_embed.fc1", temb))) + pool @ P["text_embed"]
    cs = F.silu(cond)
    h = (lin("patch_embed", xp).reshape(B, n, W) + P["pos_embed"][None]).reshape(B * n, W)

    def mod(hn, shift, scale):
        return (hn.reshape(B, n, W) * (1 + scale[:, None]) + shift[:, None]).reshape(B * n, W)

    def gate(a, g):
        return (a.reshape(B, n, W) * g[:, None]).reshape(B * n, W)

    act = {"relu": F.relu, "sigmoid_gelu": lambda v: v * torch.sigmoid(1.702 * v)}.get(cfg["activation"], F.silu)
    dh = W // H
    for d in range(cfg["depth"]):
        pre = f"blocks.{d}."
        m = [lin(pre + "ada." + k, cs) for k in
             ["shift_attn", "scale_attn", "gate_attn", "shift_mlp", "scale_mlp", "gate_mlp"]]
        hn = mod(F.layer_norm(h, (W,), eps=1e-5), m[0], m[1])
        q = lin(pre + "attn.q", hn).reshape(B, n, H, dh).permute(0, 2, 1, 3)
        k = lin(pre + "attn.k", hn).reshape(B, n, H, dh).permute(0, 2, 3, 1)
        v = lin(pre + "attn.v", hn).reshape(B, n, H, dh).permute(0, 2, 1, 3)
        a = torch.softmax((q @ k) * (1.0 / math.sqrt(dh)), dim=3) @ v
        h = gate(lin(pre + "attn.o", a.permute(0, 2, 1, 3).reshape(B * n, W)), m[2]) + h
        hn = mod(F.layer_norm(h, (W,), eps=1e-5), m[3], m[4])
        h = gate(lin(pre + "mlp.fc2", act(lin(pre + "mlp.fc1", hn))), m[5]) + h
    hn = mod(F.layer_norm(h, (W,), eps=1e-5), lin("final.ada.shift", cs), lin("final.ada.scale", cs))
    out = lin("final.out", hn)
    return out.reshape(B, S // p, S // p, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, S, S)


class Dit(torch.nn.Module):
    """The policy as a module (DDP needs one); parameter names are seppoc's with '.' spelled '__'."""

    def __init__(self, tensors, cfg):
        super().__init__()
        self.cfg = cfg
        self.names = sorted(tensors)
        self.p = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v.clone()) for k, v in tensors.items()})
        self.core = dit_core

    def tensors(self):
        return {k: self.p[k.replace(".", "__")] for k in self.names}

    def forward(self, x, t, tokens):
        return dit_forward(self.tensors(), self.cfg, x, t, tokens, self.core)


def sampler_timesteps(n_train, steps):
    """The sampler's timesteps (src/sampler): `steps` evenly spaced indices from T-1 down."""
    s = min(max(steps, 1), max(n_train, 1))
    return [max(int(math.floor(n_train - i * n_train / s + 0.5)) - 1, 0) for i in range(s)]


class DitFamily(Family):
    name = "dit"
    prediction = "epsilon"

    @classmethod
    def load(cls, path, *, device="cpu", dtype=torch.float32):
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(path)
        except Exception as e:  # safetensors raises several types for a file that is not safetensors
            raise UserError(f"{path}: not a readable safetensors file ({e})")
        if "dit_config" not in meta:
            raise UserError(f"{path}: not a seppoc DiT checkpoint (no dit_config in its metadata)")
        schedule = json.loads(meta.get("schedule", '{"kind": "linear", "n_steps": 1000}'))
        # The noising, target and sampler here are epsilon-prediction's; a v or flow checkpoint would train on the
        # wrong target.
        if schedule.get("param", "epsilon") != "epsilon":
            raise UserError(f"{path}: a {schedule['param']} model; the DiT family trains epsilon-prediction models "
                            "only (train it with `seppoc run`)")
        return cls(tensors, json.loads(meta["dit_config"]), meta, schedule, path, device, dtype)

    def __init__(self, tensors, cfg, meta, schedule, path, device, dtype):
        self.cfg, self.meta, self.source = cfg, meta, path
        self.device, self.dtype = torch.device(device), dtype
        self.alphas_cumprod = alphas_cumprod(schedule.get("kind", "linear"), schedule.get("n_steps", 1000))
        self.num_timesteps = len(self.alphas_cumprod)
        self.resolution = cfg["image_size"]
        self.net = Dit({k: v.to(dtype) for k, v in tensors.items()}, cfg).to(self.device)
        self.initial = self.snapshot()

    def set_alphas_cumprod(self, ac):
        """Use the schedule a data export recorded (`seppoc export-torch` writes the run's alphas_cumprod)."""
        self.alphas_cumprod = torch.as_tensor(ac, dtype=torch.float64)
        self.num_timesteps = len(self.alphas_cumprod)

    def module(self):
        return self.net

    def trainable_parameters(self):
        return [(k.replace("__", "."), p) for k, p in self.net.p.items()]

    def compile(self):
        """The network body under `torch.compile` (inductor, default mode) for every later pass: taped, reference
        and sampling (each grad mode and batch size compiles once; a second size makes the batch axis dynamic)."""
        self.net.core = torch.compile(dit_core)

    def optimizer_groups(self, weight_decay=0.01):
        """seppoc's AdamW groups: decoupled decay on matrices except the embeddings."""
        named = self.net.tensors()
        decay = [p for k, p in named.items() if p.dim() >= 2 and not k.endswith("embed")]
        ids = {id(p) for p in decay}
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": [p for p in named.values() if id(p) not in ids], "weight_decay": 0.0}]

    def encode_prompts(self, prompts):
        if self.cfg["vocab_size"] != len(VOCAB):
            raise UserError(f"{self.source}: a DiT with a {self.cfg['vocab_size']}-word vocabulary; captions can be "
                            f"encoded for the image world's {len(VOCAB)} words only")
        return {"tokens": torch.tensor([tokenize(p, self.cfg["max_tokens"]) for p in prompts], dtype=torch.long)}

    def null_cond(self, n):
        return {"tokens": torch.full((n, self.cfg["max_tokens"]), PAD, dtype=torch.long)}

    def encode_images(self, pixels):
        return pixels.to(self.dtype)

    def predict(self, net, x_t, t, cond):
        return net(x_t.to(self.device), t.to(self.device), cond["tokens"].to(self.device))

    @torch.no_grad()
    def sample(self, cond, x_T, spec, gen):
        """DDIM (eta) or DDPM with classifier-free guidance on a [cond; null] batch, x0 clamped to [-1, 1], as
        src/sampler does; the arithmetic of each update in float64."""
        ac = self.alphas_cumprod.tolist()
        ts = sampler_timesteps(len(ac), spec["steps"])
        w = spec["cfg"]
        tokens = cond["tokens"].to(self.device)
        x = x_T.to(self.device, self.dtype)
        for i, t in enumerate(ts):
            last = i + 1 == len(ts)
            b = x.shape[0]
            if w == 1.0:
                eps = dit_forward(self.net.tensors(), self.cfg, x, torch.full((b,), t), tokens, self.net.core)
            else:
                both = dit_forward(self.net.tensors(), self.cfg, torch.cat([x, x]), torch.full((2 * b,), t),
                                   torch.cat([tokens, torch.full_like(tokens, PAD)]), self.net.core)
                c, u = both[:b], both[b:]
                eps = u + w * (c - u)
            ab = float(ac[t])
            ab_prev = 1.0 if last else float(ac[ts[i + 1]])
            xd, ed = x.double(), eps.double()
            x0 = ((xd - math.sqrt(1 - ab) * ed) / math.sqrt(ab)).clamp(-1, 1)
            noise = torch.zeros_like(xd)
            if not last and (spec["sampler"] == "ddpm" or spec["eta"] > 0):
                noise = gen.next().to(xd.device)
            if spec["sampler"] == "ddim":
                sigma = spec["eta"] * math.sqrt(max((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev), 0.0))
                direction = math.sqrt(max(1 - ab_prev - sigma * sigma, 0.0))
                e = (xd - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
                x = (math.sqrt(ab_prev) * x0 + direction * e + sigma * noise).to(self.dtype)
            else:
                beta = 1 - ab / ab_prev
                c0 = math.sqrt(ab_prev) * beta / (1 - ab)
                ct = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
                std = math.sqrt(max(beta * (1 - ab_prev) / (1 - ab), 0.0))
                x = (c0 * x0 + ct * xd + std * noise).to(self.dtype)
        return x.clamp(-1, 1)

    def weights(self, snap):
        return super().weights(self.initial if snap is None else snap)

    def save(self, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "model.safetensors")
        meta = dict(self.meta, step=str(getattr(self, "trained_steps", 0)), kind="run", command="seppoc-torch train")
        tmp = path + ".tmp"
        save_file({k: v.detach().cpu().float().contiguous() for k, v in self.net.tensors().items()}, tmp,
                  metadata=meta)
        os.replace(tmp, path)
        return path
